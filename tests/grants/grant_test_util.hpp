// Set-up shared by the grant tests without the network (test_grant_files.cpp,
// test_grant_table.cpp): a sample grant file and small text helpers.
#pragma once

#include <chrono>
#include <string>

#include "kith/grants.hpp"
#include "kith_catch.hpp"

namespace kith::grant_tests {

using namespace std::chrono_literals;

// A grant file for bob of node alice@pi1: two endpoints, kvs and echo:echo,
// 10/s burst 20, expiring 2030-01-02 03:00 UTC.
inline grant_file sample() {
    grant_file g;
    g.node = "alice@pi1";
    g.endpoints = {"tcp://192.0.2.7:4370", "tcp://127.0.0.1:4370"};
    g.server_key = keypair::generate().pub;
    g.client = keypair::generate();
    g.label = "bob";
    g.allow = {{"kvs", {}}, {"echo", {"echo"}}};
    g.rate = {10, 20};
    g.expires = std::chrono::sys_days{std::chrono::year{2030} / 1 / 2} + 3h;
    return g;
}

// `s` with the first `from` replaced by `to` (which must be there).
inline std::string replace(std::string s, const std::string& from, const std::string& to) {
    auto p = s.find(from);
    REQUIRE(p != std::string::npos);
    return s.replace(p, from.size(), to);
}

// The message of a grant file that must not parse (errc::decode).
inline std::string parse_error(const std::string& text) {
    auto r = grant_file::parse(text);
    REQUIRE_FALSE(r.ok());
    CHECK(r.code() == errc::decode);
    return r.err().detail;
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace kith::grant_tests
