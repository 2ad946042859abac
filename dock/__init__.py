"""The docking-station side. For now: verification of a camera's segment store
(signatures, hash chain, file hashes) and decryption/recovery for the evidence
office. The dock agent itself (serial link, receipts, evidence store) builds on it.
"""
