"""The core: schema, clocks, resolver, transitions, queue, handlers, waiting."""
