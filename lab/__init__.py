"""Emulated Azure on loopback: one fake of each service, shared by the tests, benchmarks and demo.

Every server here listens on 127.0.0.0/8 only and speaks the real REST shapes over HTTPS, so the
real Azure SDK clients drive it.
"""
