"""Files made for the site or game: encoded images, their metadata, atlases, the
asset manifest, and the schemas of the JSON files among them.

Pillow is imported inside the functions that need it. Imports the base, the
core and state; never the plugin contract or the engine.
"""
