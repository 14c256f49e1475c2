"""The pure core: images.toml → AssetSpecs with their keys → a Plan.

manifest (load, validate) → expand (matrices) → resolve (defaults, styles,
chains, checks against the backends' declarations) → spec (canonical form,
keys) → plan (the diff against the lock, the disk and the cache).

No I/O beyond what callers pass in as lookup functions (file digests, cache
presence): every plan case is a data-driven test. Imports the base, the plugin
contract (model declarations) and state's record types, nothing above.
"""
