// Reads the lines of a fenced block (```<fence> ... ```) of a document, so
// tests can check vectors that live in docs/ (tests only).
#pragma once
#include <fstream>
#include <string>
#include <utility>
#include <vector>

// Non-empty lines of every block opened by "```<fence>", with their line
// numbers; empty if the file cannot be read. `closed`, when given, says
// whether every such block was closed by "```".
inline std::vector<std::pair<int, std::string>> fenced_lines(const std::string& file, const std::string& fence,
                                                             bool* closed = nullptr) {
    std::ifstream in(file);
    std::vector<std::pair<int, std::string>> out;
    std::string line;
    bool in_block = false;
    int n = 0;
    while (std::getline(in, line)) {
        ++n;
        if (!in_block) {
            in_block = line == "```" + fence;
            continue;
        }
        if (line == "```") {
            in_block = false;
            continue;
        }
        if (!line.empty()) out.emplace_back(n, line);
    }
    if (closed) *closed = !in_block;
    return out;
}
