// kith — the command line.
//
//   kith node [options]    run a node in the foreground until Ctrl-C / SIGTERM
//   kith --help | --version
//
// Exit codes: 0 success; 1 runtime failure (e.g. the port is taken);
// 2 bad usage. Errors are one line on stderr.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "kith/builtin.hpp"
#include "kith/node.hpp"

namespace {

constexpr const char* kVersion = "0.1.0";

const char* kUsage = R"(usage: kith <command> [options]

commands:
  node      run a node in the foreground (Ctrl-C or SIGTERM stops it cleanly)

options:
  --help    show help (also: kith node --help)
  --version print the version
)";

const char* kNodeUsage = R"(usage: kith node [options]

Runs a node hosting the built-in services and prints its name, endpoint and
key fingerprint, then node up/down events as they happen. Ctrl-C or SIGTERM
stops it cleanly (goodbye sent to every peer).

options:
  --name N          node name; "N" becomes "N@<hostname>" (default: kith)
  --port P          TCP port to listen on, all interfaces (default: 4370)
  --listen EP       ZeroMQ endpoint to bind instead, e.g. tcp://127.0.0.1:0
  --advertise EP    endpoint others should dial (behind NAT)
  --cookie C        cluster cookie (default: the cookie file in the key dir)
  --key-dir D       key directory (default: $KITH_HOME or ~/.kith)
  --services S,...  built-in services to host (default: kvs,echo,demo)
  --workers N       actor worker threads (default: one per core)
)";

std::string hostname() {
    char buf[256] = {0};
    if (gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "localhost";
    std::string h(buf);
    // Node names allow [A-Za-z0-9_.-] in the host part.
    for (char& c : h)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_')) c = '-';
    return h;
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, sep))
        if (!item.empty()) out.push_back(item);
    return out;
}

int fail(std::string msg, int code) {
    // Library errors already say "kith: "; say it once.
    for (auto p = msg.find("kith: "); p != std::string::npos; p = msg.find("kith: ")) msg.erase(p, 6);
    std::fprintf(stderr, "kith: %s\n", msg.c_str());
    return code;
}

int cmd_node(int argc, char** argv) {
    std::map<std::string, std::string> opt;
    static const std::vector<std::string> known = {"--name",   "--port",    "--listen",   "--advertise",
                                                   "--cookie", "--key-dir", "--services", "--workers"};
    for (int i = 0; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            std::fputs(kNodeUsage, stdout);
            return 0;
        }
        if (std::find(known.begin(), known.end(), a) == known.end())
            return fail("node: unknown option '" + a + "' (see kith node --help)", 2);
        if (i + 1 >= argc) return fail("node: option " + a + " needs a value", 2);
        opt[a] = argv[++i];
    }

    kith::node_options o;
    std::string name = opt.count("--name") ? opt["--name"] : "kith";
    o.name = name.find('@') == std::string::npos ? name + "@" + hostname() : name;
    if (!kith::valid_node_name(o.name)) return fail("node: invalid node name '" + o.name + "'", 2);
    int port = 4370;
    if (opt.count("--port")) {
        try {
            port = std::stoi(opt["--port"]);
        } catch (...) {
            port = -1;
        }
        if (port < 0 || port > 65535) return fail("node: --port must be 0..65535", 2);
    }
    o.net.listen = opt.count("--listen") ? opt["--listen"] : "tcp://*:" + std::to_string(port);
    if (opt.count("--advertise")) o.net.advertise = opt["--advertise"];
    if (opt.count("--cookie")) o.net.cookie = opt["--cookie"];
    if (opt.count("--key-dir")) o.net.key_dir = opt["--key-dir"];
    if (opt.count("--workers")) {
        try {
            o.workers = static_cast<unsigned>(std::stoul(opt["--workers"]));
        } catch (...) {
            return fail("node: --workers must be a number", 2);
        }
    }
    std::vector<std::string> services = split(opt.count("--services") ? opt["--services"] : "kvs,echo,demo", ',');
    for (auto& s : services)
        if (s != "kvs" && s != "echo" && s != "demo")
            return fail("node: unknown service '" + s + "' (built-in: kvs, echo, demo)", 2);

    // Block the stop signals in every thread; the main thread waits for them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    try {
        kith::node n(o);
        for (auto& s : services) {
            if (s == "kvs") n.add_service(kith::services::make_kvs());
            if (s == "echo") n.add_service(kith::services::make_echo());
            if (s == "demo") n.add_service(kith::services::make_demo(n));
        }
        n.subscribe_nodes([](const kith::node_event& e) {
            if (e.what == kith::node_event::kind::up)
                std::printf("nodeup %s trust=%s endpoint=%s fingerprint=%s\n", e.node.c_str(),
                            std::string(kith::to_string(e.info.trust)).c_str(), e.info.endpoint.c_str(),
                            e.info.fingerprint.c_str());
            else
                std::printf("nodedown %s reason=%s\n", e.node.c_str(), e.reason.c_str());
            std::fflush(stdout);
        });
        std::printf("node %s\nendpoint %s\nkey %s\nfingerprint %s\nservices", n.name().c_str(),
                    n.endpoint().c_str(), n.key().z85().c_str(), n.key().fingerprint().c_str());
        for (auto& s : services) std::printf(" %s", s.c_str());
        std::printf("\nready (Ctrl-C to stop)\n");
        std::fflush(stdout);
        int sig = 0;
        sigwait(&set, &sig);
        std::printf("stopping (%s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        std::fflush(stdout);
        n.stop();
        std::printf("stopped\n");
        return 0;
    } catch (const kith::setup_error& e) {
        return fail(std::string("node: ") + e.what(), 1);
    } catch (const std::exception& e) {
        return fail(std::string("node: ") + e.what(), 1);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fputs(kUsage, stderr);
        return 2;
    }
    std::string cmd = argv[1];
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
        std::fputs(kUsage, stdout);
        return 0;
    }
    if (cmd == "--version") {
        std::printf("kith %s\n", kVersion);
        return 0;
    }
    if (cmd == "node") return cmd_node(argc - 2, argv + 2);
    return fail("unknown command '" + cmd + "' (see kith --help)", 2);
}
