"""The ``@hookimpl`` marker plugins use (also exported as ``gantk.hookimpl``)."""
import pluggy

hookimpl = pluggy.HookimplMarker("gantk")
