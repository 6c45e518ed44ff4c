"""Normalizers: small pure functions that turn free text into typed values.

Each module does one thing and knows nothing about HTML or HTTP: durations, hospital stay,
setting venues, personnel roles, anesthesia kinds, codes and code systems, and text clean-up.
"""
