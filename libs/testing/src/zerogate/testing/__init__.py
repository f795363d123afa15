"""Zerogate's test lab, for tests and benches; never imported by a service.

============================  =====================================================
:mod:`~zerogate.testing.lab`   network namespaces, veth links, NAT routers, loss and
                               rate limits, processes tracked by PID
:mod:`~.ping`                  ICMP echo from a raw socket
:mod:`~.wireguard`             wireguard-go and ``zerogate-wg`` interfaces, ``wg`` dumps
:mod:`~.impair`                a UDP proxy that delays, reorders, drops, duplicates
:mod:`~.transfer`              TCP transfers checked with SHA-256
:mod:`~.turn`                  our relay, coturn and its tools as processes; a TURN test client
:mod:`~.fixtures`              pytest fixtures: real nats-server, Postgres, the bus
============================  =====================================================
"""
