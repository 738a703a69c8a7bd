"""The benchmark behind ``make bench``: real processes over real sockets, figures in a table and JSON.

    run.py             the driver: sections, the table, ``--out bench-results.json``
    full_stack.py      the hitl stack's sections (latency, throughput, waiting, memory, cold start)
    driving.py         what both drivers share: raw server requests, async polling, CPU settling
    sdk_worker.py      a bare SDK worker for section 1 (the local server with the real SDK)
    light_sink.py      a minimal SMTP sink, to tell the product's CPU from the dev sink's
    hello.py           a bare functions-framework function, the cold-start baseline
    profile_server.py  the local server under a CPU-time cProfile
    server_mem.py      the local server under tracemalloc
    stats.py           percentiles and summaries of samples, a bounded gather

CPU and memory of processes are read by ``devstack.procstats`` (shared with the load tests).

Speed and memory targets live here, never in timed unit tests.
"""
