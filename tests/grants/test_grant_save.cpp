// A grant table change whose save fails is not in force either: the owner
// is told "could not be saved", so the grant must be as it was (a raised
// limit or rate kept in memory would hold until the node restarts, while
// the owner believes nothing changed). The write is made to fail with
// RLIMIT_FSIZE (root ignores file modes).
#include <signal.h>
#include <sys/resource.h>

#include "../transport/tmpdir.hpp"
#include "grants/grants_table.hpp"
#include "kith/grants.hpp"
#include "kith_catch.hpp"

using namespace kith;

namespace {

// Files written while it lives may hold at most `bytes` (a larger write
// fails with EFBIG; SIGXFSZ ignored).
struct small_files {
    rlimit old{};
    explicit small_files(rlim_t bytes) {
        ::signal(SIGXFSZ, SIG_IGN);
        ::getrlimit(RLIMIT_FSIZE, &old);
        rlimit r = old;
        r.rlim_cur = bytes;
        REQUIRE(::setrlimit(RLIMIT_FSIZE, &r) == 0);
    }
    ~small_files() { ::setrlimit(RLIMIT_FSIZE, &old); }
};

}  // namespace

TEST_CASE("grants: a change whose table could not be saved is not in force (limits, rate)", "[grants]") {
    temp_dir tmp;
    detail::grant_table t(tmp.path / "grants");
    grant_spec s;
    s.label = "bob";
    s.allow = {{"kvs", {}}};
    s.rate = {10, 20};
    s.limits = grant_limits{.pending = 8};
    auto bob = t.create(s, keypair::generate().pub);
    REQUIRE(bob.ok());
    {
        small_files cap(16);
        auto r = t.set_limits("bob", grant_limits{.pending = 1024, .spawned = 4096});
        REQUIRE_FALSE(r.ok());
        CHECK(r.code() == errc::badarg);
        CHECK(r.err().detail.find("could not be saved") != std::string::npos);
        auto q = t.set_rate("bob", rate_limit{1000, 1000});
        REQUIRE_FALSE(q.ok());
        CHECK(q.err().detail.find("could not be saved") != std::string::npos);
    }
    CHECK((*bob)->limits() == grant_limits{.pending = 8});
    CHECK((*bob)->rate().per_second == 10);
    CHECK(t.find("bob")->limits() == grant_limits{.pending = 8});
    // Saved once the disk takes it again.
    REQUIRE(t.set_limits("bob", grant_limits{.pending = 2}).ok());
    CHECK(detail::grant_table(tmp.path / "grants").find("bob")->limits() == grant_limits{.pending = 2});
}
