"""The C backend: emitter (jinja2 templates) shared by the host and RV32 targets."""

from micoc.targets.c.emitter import check_support, emit_c

__all__ = ["check_support", "emit_c"]
