"""Simulated serial line sensors on a pty (or a real port): the wristband and an NMEA GPS.

`WristbandEmitter` sends `$WB` vibration lines driven by a machine model; `GpsEmitter` sends RMC
and GGA sentences along a track between sites. Both write to a `PtyPair`'s device side at a
configurable rate, keep a bounded log of what they emitted (and what a correct decoder reports
for it), and have fault switches: garbage bytes, bad checksums, silence, and for the GPS, no fix.
"""
