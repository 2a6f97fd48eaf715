// `kith node --rkvs N1,N2,...`: the replicated kvs (kith/rkvs.hpp) of a CLI
// node, with the service name "rkvs" and the library's defaults.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kith/node.hpp"
#include "kith/rkvs.hpp"

namespace kith::cli {

// Names without '@' get this machine's hostname. Throws cli_error{kUsage}
// for an empty list, a list without this node or with a node twice. The
// node must outlive the result.
std::unique_ptr<replicated_kvs> host_rkvs(kith::node& n, const std::vector<std::string>& replicas);

}  // namespace kith::cli
