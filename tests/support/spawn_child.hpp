// spawn_child.hpp — fork/exec of a test's child process, shared by the
// process harnesses (tests/dist/child_node.hpp, tests/grants/peer_process.hpp).
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace test_support {

// Starts args[0] with `args` and the given descriptors as its stdin, stdout
// and stderr (-1: inherited). The child dies with SIGKILL when the test
// process dies, so a crashed test never leaves nodes behind. Returns the pid;
// throws std::runtime_error if fork fails. Descriptors opened O_CLOEXEC by
// the caller are closed in the child by exec; the caller closes its copies
// of the child's ends.
inline pid_t spawn_child(std::vector<std::string> args, int in_fd, int out_fd, int err_fd) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
        // Only async-signal-safe calls until exec (the parent has threads).
        prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
        if (getppid() != parent) _exit(127);
        if (in_fd >= 0) dup2(in_fd, 0);
        if (out_fd >= 0) dup2(out_fd, 1);
        if (err_fd >= 0) dup2(err_fd, 2);
        execv(argv[0], argv.data());
        _exit(127);
    }
    return pid;
}

}  // namespace test_support
