"""Working live: `watch` (rounds on every save, obsolete work cancelled) and the
gallery (a contact sheet written to disk, or served and refreshed each round)."""
