#!/usr/bin/env escript
%% The Erlang anchor of kith's benchmark (group "erlang" of kith_bench, which
%% runs this script and reads its lines): distributed Erlang between two
%% nodes on this machine, measured in the same run as kith so that ratios
%% compare like with like. Prints "<figure> <value> <unit>" lines, the same
%% shapes as kith's figures:
%%   erlang_rpc_p50_us, erlang_rpc_p99_us    sequential erpc:call of a BIF
%%   erlang_remote_send_msgs_per_s           32-byte binaries, process to
%%                                           process, bounded window with acks
%%   erlang_rpc_32_callers_calls_per_s       32 processes, each with one
%%                                           rpc:call outstanding
%%   erlang_remote_spawn_per_s               32 processes, each spawning on
%%                                           the other node and awaiting the
%%                                           new process's reply
%% Both nodes listen on loopback only (inet_dist_use_interface) and epmd is
%% asked to listen on loopback (ERL_EPMD_ADDRESS, set by kith_bench).
-mode(compile).

main(_) ->
    [] = os:cmd("epmd -daemon"),  % started here: an escript does not start it itself
    ok = application:set_env(kernel, inet_dist_use_interface, {127,0,0,1}),
    {ok, _} = start_distribution(list_to_atom("kith_anchor_a_" ++ os:getpid()), 50),
    true = erlang:set_cookie(kith_bench_anchor),
    {ok, Peer, B} = peer:start_link(#{name => peer:random_name(kith_anchor_b),
                                      args => ["-setcookie", "kith_bench_anchor",
                                               "-kernel", "inet_dist_use_interface", "{127,0,0,1}"]}),
    pong = net_adm:ping(B),
    load_sink_module(B),
    rpc_latency(B),
    remote_send(B),
    concurrent(B, "erlang_rpc_32_callers_calls_per_s", "calls/s", 32, 100000,
               fun() -> [x] = rpc:call(B, lists, reverse, [[x]]) end),
    concurrent(B, "erlang_remote_spawn_per_s", "spawns/s", 32, 40000,
               fun() ->
                       Self = self(),
                       Ref = make_ref(),
                       spawn(B, erlang, send, [Self, Ref]),
                       receive Ref -> ok after 10000 -> exit(spawn_timeout) end
               end),
    peer:stop(Peer),
    net_kernel:stop(),
    os:cmd("epmd -kill"),  % ours: started above, no names left
    ok.

%% "epmd -daemon" returns before epmd listens: registering at once failed
%% now and then with "register/listen error: econnrefused" (no Erlang
%% figures in that run). Waits until epmd answers, every 100 ms for 5 s
%% at most, then registers.
start_distribution(Name, Tries) ->
    case net_adm:names() of
        {error, _} when Tries > 0 -> timer:sleep(100), start_distribution(Name, Tries - 1);
        _ -> net_kernel:start([Name, shortnames])
    end.

report(Name, Value, Unit) ->
    io:format("~s ~.6g ~s~n", [Name, float(Value), Unit]).

rpc_latency(B) ->
    Call = fun(I) -> [I] = erpc:call(B, lists, reverse, [[I]]) end,
    [Call(I) || I <- lists:seq(1, 2000)],
    Us = lists:sort([element(1, timer:tc(fun() -> Call(I) end)) || I <- lists:seq(1, 20000)]),
    N = length(Us),
    report("erlang_rpc_p50_us", lists:nth(N div 2, Us), "us"),
    report("erlang_rpc_p99_us", lists:nth(N * 99 div 100, Us), "us").

%% A sink on B counts messages and acknowledges every AckEvery; the source
%% keeps at most Window unacknowledged, like kith's remote_send figure.
remote_send(B) ->
    Total = 2000000, Window = 20000, AckEvery = 1000,
    Self = self(),
    Sink = spawn(B, kith_anchor_sink, sink, [Self, AckEvery, 0]),
    Payload = binary:copy(<<"x">>, 32),
    T0 = erlang:monotonic_time(microsecond),
    send_loop(Sink, Payload, Total, Window, AckEvery, 0, 0),
    S = (erlang:monotonic_time(microsecond) - T0) / 1.0e6,
    exit(Sink, kill),
    report("erlang_remote_send_msgs_per_s", Total / S, "msgs/s").

%% The sink runs on B, which does not have this script's code: a small
%% module compiled here and loaded there.
load_sink_module(B) ->
    Src = ["-module(kith_anchor_sink).",
           "-export([sink/3]).",
           "sink(Src, AckEvery, N) ->"
           "    receive {m, _} ->"
           "        N1 = N + 1,"
           "        case N1 rem AckEvery of 0 -> Src ! {ack, N1}; _ -> ok end,"
           "        sink(Src, AckEvery, N1)"
           "    end."],
    Forms = [begin {ok, T, _} = erl_scan:string(F), {ok, Form} = erl_parse:parse_form(T), Form end
             || F <- Src],
    {ok, Mod, Bin} = compile:forms(Forms),
    {module, Mod} = rpc:call(B, code, load_binary, [Mod, "kith_anchor_sink.erl", Bin]).

send_loop(_Sink, _P, Total, _W, _A, Sent, Acked) when Acked >= Total, Sent >= Total -> ok;
send_loop(Sink, P, Total, W, A, Sent, Acked) when Sent < Total, Sent - Acked < W ->
    Sink ! {m, P},
    send_loop(Sink, P, Total, W, A, Sent + 1, Acked);
send_loop(Sink, P, Total, W, A, Sent, _Acked) ->
    receive {ack, N} -> send_loop(Sink, P, Total, W, A, Sent, N)
    after 10000 -> exit(send_stalled)
    end.

%% Workers processes each run Op in a loop until Total operations are done
%% in all; returns operations per second.
concurrent(_B, Name, Unit, Workers, Total, Op) ->
    Counter = counters:new(1, [atomics]),
    Parent = self(),
    [Op() || _ <- lists:seq(1, 500)],  % warm-up
    T0 = erlang:monotonic_time(microsecond),
    Pids = [spawn_link(fun() -> worker(Counter, Total, Op), Parent ! {done, self()} end)
            || _ <- lists:seq(1, Workers)],
    [receive {done, P} -> ok end || P <- Pids],
    S = (erlang:monotonic_time(microsecond) - T0) / 1.0e6,
    report(Name, counters:get(Counter, 1) / S, Unit).

worker(Counter, Total, Op) ->
    case counters:get(Counter, 1) >= Total of
        true -> ok;
        false ->
            Op(),
            counters:add(Counter, 1, 1),
            worker(Counter, Total, Op)
    end.
