"""Zerogate's test lab, for tests and benches; never imported by a service.

============================  =====================================================
:mod:`~zerogate.testing.lab`   network namespaces, veth links, NAT routers, loss and
                               rate limits, processes tracked by PID, ICMP echo
                               (``zerogate.common.ping``) from inside a namespace
:mod:`~.wireguard`             wireguard-go and ``zerogate-wg`` interfaces, ``wg`` dumps
:mod:`~.impair`                a UDP proxy that delays, reorders, drops, duplicates
:mod:`~.transfer`              TCP transfers checked with SHA-256
:mod:`~.turn`                  our relay, coturn and its tools as processes; a TURN test client
:mod:`~.fixtures`              pytest fixtures: real nats-server, Postgres, the bus
:mod:`~.stack`                 our services as processes (port 0, ports file); an admin
                               that configures them over REST
:mod:`~.ztna`                  the end-to-end lab: client and gateway behind NATs,
                               control plane and relays outside, deployments
:mod:`~.oidc`                  panva's oidc-provider on Node; a browser that signs in
:mod:`~.dnsd`                  dnsmasq in a namespace; a namespace's resolv.conf
:mod:`~.packets`               IP packets built with checksums written apart
============================  =====================================================
"""
