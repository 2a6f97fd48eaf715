// Peer-supplied text printed by `kith node`, `kith nodes` and `kith watch`
// is escaped (bindings/cli: printable): no newline, no terminal escape, no
// bidi override reaches the terminal or the event log.
#include "text.hpp"
#include "kith_catch.hpp"

using kith::cli::printable;

TEST_CASE("cli: peer-supplied text is escaped before it is printed") {
    CHECK(printable("gandalf@pi1") == "gandalf@pi1");
    CHECK(printable("évora@café") == "évora@café");  // UTF-8 passes
    CHECK(printable("a\nnodeup evil@x trust=cluster") == "a\\nnodeup evil@x trust=cluster");
    CHECK(printable("x\r\t") == "x\\r\\t");
    CHECK(printable("\x1b[2J\x1b]0;title\x07") == "\\x1b[2J\\x1b]0;title\\x07");
    CHECK(printable(std::string("a\0b", 3)) == "a\\x00b");
    CHECK(printable("\x7f") == "\\x7f");
    CHECK(printable("back\\slash") == "back\\\\slash");
    CHECK(printable("\xc2\x9b" "31m") == "\\xc2\\x9b31m");          // C1 CSI in UTF-8
    CHECK(printable("\x9b" "31m") == "\\x9b31m");                   // a lone C1 byte
    CHECK(printable("\xe2\x80\xae" "txt") == "\\xe2\\x80\\xaetxt");  // U+202E right-to-left override
    CHECK(printable("\xe2\x80\xa8") == "\\xe2\\x80\\xa8");          // U+2028 line separator
    CHECK(printable("\xc0\x8a") == "\\xc0\\x8a");                   // overlong newline
    CHECK(printable("\xed\xa0\x80") == "\\xed\\xa0\\x80");          // a surrogate
    CHECK(printable("\xf0\x9f\x90\xa7") == "\xf0\x9f\x90\xa7");     // an emoji passes
    CHECK(printable("trunc\xe2\x82") == "trunc\\xe2\\x82");
    // Nothing printable contains a control byte.
    std::string all;
    for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
    for (unsigned char c : printable(all)) CHECK((c >= 0x20 && c != 0x7f));
}
