"""`xpfdp demo`: the NAT firewall between namespaces with real traffic, and its report.

`topology` builds client — firewall — server namespaces, `traffic` drives kernel sockets
(TCP bulk, a UDP mouse flow, pings) and counts what arrives, `report` turns the numbers
into the report, `plot` draws per-flow throughput, `run` puts them in order.
"""
