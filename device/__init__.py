"""The camera runtime. Data path: camera → ring buffer → muxer → age writer → segment store.

Modules, in the order footage flows through them:
``camera`` (the seam and its packet type), ``ring_buffer`` (pre-record, RAM only),
``muxer`` (MPEG-TS via PyAV), ``common.age_format`` (encryption),
``segment_writer`` (rotation, durability, manifests), ``segment_store`` (files on disk,
hash-chain head, sealing after a power cut), ``recorder`` (wires them together).
"""
