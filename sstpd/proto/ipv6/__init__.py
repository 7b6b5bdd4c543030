"""IPv6 on the PPP link: the header codec and data-path classifier (:mod:`.packet`) and
the ICMPv6 Neighbor Discovery messages the server exchanges with a client (:mod:`.nd`)."""
