"""The built-in backends: plugins like any other. They import only the plugin
contract (`nebula_build.plugin`) and the base, and nothing imports them: the
plugin manager loads them by dotted name."""
