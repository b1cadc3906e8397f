"""A plugin module whose import fails, like a framework built against the wrong ABI."""
raise ImportError("simulated broken build: undefined symbol _ZN5torch3jit")
