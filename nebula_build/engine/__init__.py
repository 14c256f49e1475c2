"""Running the flow: load a project, plan it, and apply the plan.

prepare (load + resolve, or the spec cache) → planning (the images' plan and
the files made from them) → round (the one apply round: preflight, execute,
record failures, build atlases and the asset manifest) → execute / apply (the
backends, concurrency, keep-going, atomic writes, the lock). noop answers an
unchanged project's plan from stats; gc prunes the cache. Imports the base, the
plugin contract, state, the core and outputs; prints nothing.
"""
