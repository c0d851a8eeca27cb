"""The process manager: how gorox runs in production (docs/procman.md).

- ``single``  one stage in this process, reloaded in place (``-single``, and the core of a worker)
- ``leader``  binds the listening sockets, supervises the workers, serves cmdui and webui
- ``workers``, ``report``  the leader's view of each worker process; what info/webui/metrics show
- ``worker``  a process that serves the stage the leader tells it to
- ``channel``, ``sockets``, ``msgx``, ``commands``  leader <-> worker wiring and the wire format
- ``cmdui``, ``client``, ``token``  the admin channel, its client (``gorox ACTION``), its secret
- ``webui``, ``metrics``  the admin page and /metrics
- ``daemon``, ``stats``  running in the background; figures a worker reports
"""
