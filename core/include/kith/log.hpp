// kith/log.hpp — kith's one logging sink.
//
// Every diagnostic kith's own code produces (a refused connection, a damaged
// grant table, a callback that threw, a beacon with a bad MAC) is one
// log_record handed to one sink. No library code writes to stderr itself.
//
// Where a record goes: to the sink of the component that produced it when
// one was given (net_options::log, discovery_options::log, Python's
// `log=`), otherwise to the process-wide default sink. The default sink
// writes "kith <source>: <level>: <text>\n" to stderr for records at or above
// the default threshold (log_level::info); set_default_log_sink replaces it.
//
// Records never carry secrets (cookies, secret keys, proofs). Text that came
// from a peer is escaped before it is put in a record (kith::escape_peer_text).
//
// Thread-safety: every function here is safe to call from any thread. Sinks
// are called on kith threads, possibly several at once, and must be quick;
// they must not call back into the node that logged. A sink that throws is
// caught: the record is then written to stderr with the exception's message,
// so nothing is lost silently and the node keeps running.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace kith {

enum class log_level : std::uint8_t { debug, info, warning, error };

// "debug", "info", "warning", "error".
std::string_view to_string(log_level l) noexcept;

struct log_record {
    log_level level = log_level::info;
    // The component that wrote it: "dist", "transport", "grants", "runtime",
    // "discovery", "node", "python", ...
    std::string_view source;
    // One line, no trailing newline.
    std::string_view text;
    // The node's name ("name@host") when the record belongs to one node; empty
    // for process-wide records.
    std::string_view node;
};

using log_sink = std::function<void(const log_record&)>;

// Replaces the process-wide default sink; an empty sink restores the stderr
// writer. `min` is the lowest level the default sink receives.
void set_default_log_sink(log_sink sink, log_level min = log_level::info);

// Delivers one record: to `sink` when it is set (every level), else to the
// default sink (levels at or above its threshold). Never throws.
void log_to(const log_sink& sink, const log_record& r) noexcept;

// Shorthand for log_to with no component sink.
void log(log_level level, std::string_view source, std::string_view text) noexcept;

// Peer-supplied text made safe to print on one line: control characters,
// backslashes and bytes that are not printable UTF-8 become \xNN escapes, and
// the result is cut at `max` bytes with "..." appended.
std::string escape_peer_text(std::string_view s, std::size_t max = 200);

}  // namespace kith
