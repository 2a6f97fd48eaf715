// kith_py_peer: a C++ node in its own process that calls a (Python) node, for
// the Python tests.
//   kith_py_peer KEY_DIR COOKIE ENDPOINT Z85KEY call NODE SVC FN [ARG...]
//   kith_py_peer KEY_DIR COOKIE ENDPOINT Z85KEY spawn NODE SVC TYPE MSG [ARG...]
// ARGs are integers when they parse as one, else strings. `call` prints
//   ok <result term>         or   error <code> <detail>
// `spawn` spawns SVC:TYPE(ARG...) on NODE, sends it the request MSG from a
// mailbox and prints the reply the same way. Exit status 0 when it got an
// answer (either kind), 1 if it could not connect, 2 on bad usage.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "kith/mailbox.hpp"
#include "kith/node.hpp"

namespace {
kith::term arg_term(const std::string& s) {
    char* end = nullptr;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (!s.empty() && end && *end == '\0') return kith::term(v);
    return kith::term(s);
}
int print(const kith::result<kith::term>& r) {
    if (r) std::printf("ok %s\n", r->to_string().c_str());
    else std::printf("error %s %s\n", std::string(kith::to_string(r.code())).c_str(), r.err().detail.c_str());
    return 0;
}
}  // namespace

int main(int argc, char** argv) {
    if (argc < 9) {
        std::fprintf(stderr, "usage: kith_py_peer KEY_DIR COOKIE ENDPOINT KEY call|spawn NODE SVC FN [ARG...]\n");
        return 2;
    }
    std::string mode = argv[5], target = argv[6], svc = argv[7], fn = argv[8];
    kith::node_options o;
    o.name = "cpppeer@localhost";
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.key_dir = argv[1];
    o.net.cookie = argv[2];
    kith::node n(o);
    auto key = kith::public_key::from_z85(argv[4]);
    if (!key) return 2;
    auto up = n.connect(argv[3], *key, std::chrono::seconds(10));
    if (!up) {
        std::printf("connect failed: %s\n", up.err().message().c_str());
        return 1;
    }
    int first = mode == "spawn" ? 10 : 9;
    if (mode == "spawn" && argc < 10) return 2;
    kith::term_array args;
    for (int i = first; i < argc; ++i) args.push_back(arg_term(argv[i]));
    if (mode == "call") return print(n.call(target, svc, fn, kith::term(args), std::chrono::seconds(10)));
    if (mode != "spawn") return 2;
    auto p = n.spawn(target, svc, fn, kith::term(args), std::chrono::seconds(10));
    if (!p) return print(p.err());
    kith::mailbox me(n);
    return print(me.call(*p, arg_term(argv[9]), std::chrono::seconds(10)));
}
