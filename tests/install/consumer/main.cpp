// A program outside the kith tree, built against an installed kith.
#include <kith/term.hpp>

#include <cstdio>

int main() {
    kith::term t = kith::arr("store", "weather", "fine");
    auto back = kith::decode(kith::encode(t));
    if (!back || !(*back == t)) {
        std::puts("consumer failed: term round trip");
        return 1;
    }
    std::puts("consumer ok");
    return 0;
}
