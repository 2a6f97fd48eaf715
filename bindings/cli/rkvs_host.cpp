#include "rkvs_host.hpp"

#include "cli.hpp"

namespace kith::cli {

std::unique_ptr<replicated_kvs> host_rkvs(kith::node& n, const std::vector<std::string>& replicas) {
    rkvs_options o;
    std::string given;
    for (auto& r : replicas) {
        if (r.empty()) continue;
        o.replicas.push_back(full_node_name(r));
        given += (given.empty() ? "" : ",") + r;
    }
    if (o.replicas.empty())
        throw cli_error{"node: --rkvs wants the replica list NODE1,NODE2,... (this node among them), e.g. --rkvs " +
                            n.name() + ",b,c",
                        kUsage};
    try {
        return std::make_unique<replicated_kvs>(n, std::move(o));
    } catch (const setup_error& e) {
        throw cli_error{"node: --rkvs " + given + ": " + e.what() + " (list this node, " + n.name() +
                            ", once, and give full names NAME@HOST for other machines)",
                        kUsage};
    }
}

}  // namespace kith::cli
