"""What a project keeps on disk, and the one place that reads and writes it.

project (where every file lives) · guard (the one gate to project files: inside
the project, no link out, never the tool's own files) · lockfile (images.lock,
its snapshot, the journal) · cache (original bytes by generation key) ·
fileindex (digests by stat) · inputs (input files, read once) · projectlock
(one apply at a time) · scaffold (`init`). Imports the base only: state never
knows what a spec is.
"""
