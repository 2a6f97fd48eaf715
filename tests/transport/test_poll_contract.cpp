// What the I/O loop's poll relies on in libzmq (core/src/transport/loop.cpp,
// poll_sockets): it asks a socket for ZMQ_EVENTS (two system calls) only
// when it touched the socket since ZMQ_EVENTS or a receive last found no
// input, or when the socket's ZMQ_FD is readable. That is sound only if a
// socket found empty signals its ZMQ_FD with the next message, and stays
// quiet otherwise. Real sockets over loopback TCP, both directions.
#include <poll.h>

#include <chrono>
#include <thread>
#include <string>
#include <zmq.hpp>

#include "kith_catch.hpp"

using namespace std::chrono_literals;

namespace {

int fd_of(zmq::socket_t& s) { return s.get(zmq::sockopt::fd); }

// Whether the socket's ZMQ_FD turns readable within `ms`.
bool fd_readable(zmq::socket_t& s, int ms) {
    pollfd p{fd_of(s), POLLIN, 0};
    return ::poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

bool has_input(zmq::socket_t& s) { return (s.get(zmq::sockopt::events) & ZMQ_POLLIN) != 0; }

// Waits (ZMQ_FD, then ZMQ_EVENTS, as the loop does) until input is there.
bool wait_input(zmq::socket_t& s, std::chrono::milliseconds within) {
    const auto until = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < until) {
        if (has_input(s)) return true;
        fd_readable(s, 50);
    }
    return has_input(s);
}

struct pair_over_tcp {
    zmq::context_t ctx;
    zmq::socket_t router{ctx, zmq::socket_type::router};
    zmq::socket_t dealer{ctx, zmq::socket_type::dealer};
    std::string dealer_id = "dealer-1";

    pair_over_tcp() {
        router.set(zmq::sockopt::linger, 0);
        dealer.set(zmq::sockopt::linger, 0);
        dealer.set(zmq::sockopt::routing_id, dealer_id);
        router.bind("tcp://127.0.0.1:*");
        dealer.connect(router.get(zmq::sockopt::last_endpoint));
        // The connection up and the routing id known: one message through.
        REQUIRE(dealer.send(zmq::str_buffer("hello"), zmq::send_flags::none));
        REQUIRE(wait_input(router, 5000ms));
        zmq::message_t id, m;
        REQUIRE(router.recv(id, zmq::recv_flags::dontwait));
        REQUIRE(router.recv(m, zmq::recv_flags::dontwait));
        REQUIRE(m.to_string() == "hello");
    }
};

// Reads one message of the ROUTER (its routing id and body).
std::string router_recv(zmq::socket_t& r) {
    zmq::message_t id, m;
    REQUIRE(r.recv(id, zmq::recv_flags::dontwait));
    REQUIRE(id.more());
    REQUIRE(r.recv(m, zmq::recv_flags::dontwait));
    return m.to_string();
}

}  // namespace

TEST_CASE("poll contract: a socket that a receive found empty signals its ZMQ_FD with the next message, and only then") {
    pair_over_tcp p;
    zmq::message_t x;
    // Settled by a receive that found nothing.
    REQUIRE_FALSE(p.router.recv(x, zmq::recv_flags::dontwait));
    REQUIRE_FALSE(p.dealer.recv(x, zmq::recv_flags::dontwait));
    for (int i = 0; i < 5; ++i) {
        INFO("round " << i);
        CHECK_FALSE(fd_readable(p.router, 0));
        REQUIRE(p.dealer.send(zmq::buffer("call " + std::to_string(i)), zmq::send_flags::none));
        REQUIRE(fd_readable(p.router, 5000));
        REQUIRE(has_input(p.router));
        CHECK(router_recv(p.router) == "call " + std::to_string(i));
        REQUIRE_FALSE(p.router.recv(x, zmq::recv_flags::dontwait));

        // The other way: the DEALER was settled by its receive.
        CHECK_FALSE(fd_readable(p.dealer, 0));
        REQUIRE(p.router.send(zmq::buffer(p.dealer_id), zmq::send_flags::sndmore));
        REQUIRE(p.router.send(zmq::buffer("reply " + std::to_string(i)), zmq::send_flags::none));
        REQUIRE(fd_readable(p.dealer, 5000));
        REQUIRE(has_input(p.dealer));
        REQUIRE(p.dealer.recv(x, zmq::recv_flags::dontwait));
        CHECK(x.to_string() == "reply " + std::to_string(i));
        REQUIRE_FALSE(p.dealer.recv(x, zmq::recv_flags::dontwait));
    }
}

TEST_CASE("poll contract: ZMQ_EVENTS that found no input settles a socket like an empty receive") {
    pair_over_tcp p;
    REQUIRE_FALSE(has_input(p.router));
    for (int i = 0; i < 3; ++i) {
        CHECK_FALSE(fd_readable(p.router, 0));
        // Several messages while settled: the ZMQ_FD says so once, and
        // every one of them is there to read.
        for (int k = 0; k < 10; ++k) REQUIRE(p.dealer.send(zmq::buffer(std::to_string(k)), zmq::send_flags::none));
        REQUIRE(fd_readable(p.router, 5000));
        int got = 0;
        const auto until = std::chrono::steady_clock::now() + 5s;
        while (got < 10 && std::chrono::steady_clock::now() < until) {
            if (!wait_input(p.router, 1000ms)) continue;
            CHECK(router_recv(p.router) == std::to_string(got));
            ++got;
        }
        REQUIRE(got == 10);
        REQUIRE_FALSE(has_input(p.router));  // settled again
    }
}

TEST_CASE("poll contract: after a send, ZMQ_EVENTS still finds input that came before it, whatever the ZMQ_FD says") {
    // A send may take the socket's commands in passing (libzmq does so at
    // most about once a millisecond), the one that announced new input
    // among them; then its ZMQ_FD stays quiet while the input waits (the
    // count below: how often it did here). Hence
    // the loop asks ZMQ_EVENTS of a socket it sent on (send_on marks it).
    pair_over_tcp p;
    REQUIRE_FALSE(has_input(p.router));
    int quiet_after_send = 0;
    for (int i = 0; i < 5; ++i) {
        REQUIRE(p.dealer.send(zmq::buffer("in " + std::to_string(i)), zmq::send_flags::none));
        REQUIRE(fd_readable(p.router, 5000));  // the input is announced
        std::this_thread::sleep_for(5ms);      // past libzmq's throttle of command processing on send
        REQUIRE(p.router.send(zmq::buffer(p.dealer_id), zmq::send_flags::sndmore));
        REQUIRE(p.router.send(zmq::str_buffer("out"), zmq::send_flags::none));
        if (!fd_readable(p.router, 0)) ++quiet_after_send;
        REQUIRE(has_input(p.router));
        CHECK(router_recv(p.router) == "in " + std::to_string(i));
        REQUIRE_FALSE(has_input(p.router));
        zmq::message_t x;
        REQUIRE(wait_input(p.dealer, 5000ms));
        REQUIRE(p.dealer.recv(x, zmq::recv_flags::dontwait));
    }
    // With Debian 12's libzmq 4.3.4 the ZMQ_FD was quiet in 5 of 5 rounds:
    // the hazard is real. What the loop needs is only the line above.
    (void)quiet_after_send;
}

TEST_CASE("poll contract: a socket never asked does not signal its ZMQ_FD with its first input - a new poll set asks every socket") {
    // The DEALER sent (pair_over_tcp) but was never asked nor read from:
    // its pipe was never found empty, so the ROUTER's reply sends no
    // command. rebuild_items marks every socket of a new poll set.
    pair_over_tcp p;
    REQUIRE(p.router.send(zmq::buffer(p.dealer_id), zmq::send_flags::sndmore));
    REQUIRE(p.router.send(zmq::str_buffer("first"), zmq::send_flags::none));
    CHECK_FALSE(fd_readable(p.dealer, 300));
    REQUIRE(wait_input(p.dealer, 5000ms));  // asked, it is there
    zmq::message_t x;
    REQUIRE(p.dealer.recv(x, zmq::recv_flags::dontwait));
    CHECK(x.to_string() == "first");
}

TEST_CASE("poll contract: a socket whose input ZMQ_EVENTS found but nobody read stays quiet for the next message - so an item polled again asks every socket") {
    // zmq_poll asks ZMQ_EVENTS even of items it does not poll (the paused
    // public port, a mover awaiting its answer): their input is then
    // known to libzmq and no command announces more. Ending the pause or
    // the wait therefore makes the next poll ask every socket.
    pair_over_tcp p;
    REQUIRE(p.dealer.send(zmq::str_buffer("one"), zmq::send_flags::none));
    REQUIRE(wait_input(p.router, 5000ms));  // asked: input, left unread
    REQUIRE(p.dealer.send(zmq::str_buffer("two"), zmq::send_flags::none));
    CHECK_FALSE(fd_readable(p.router, 300));
    REQUIRE(has_input(p.router));
    CHECK(router_recv(p.router) == "one");
    REQUIRE(wait_input(p.router, 5000ms));
    CHECK(router_recv(p.router) == "two");
}
