"""Tools: specs derived from Python callables, and the runner the tool loop uses."""

from langswarm_runtime.tools.runner import run_tool_calls
from langswarm_runtime.tools.spec import Tool, ToolSpec, tool

__all__ = ["Tool", "ToolSpec", "run_tool_calls", "tool"]
