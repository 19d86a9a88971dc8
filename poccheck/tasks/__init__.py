"""Task files: reading, validation and prompt rendering."""

from poccheck.tasks.prompts import Prompt, render_prompt
from poccheck.tasks.suite import check_suite, load_suite, load_suites

__all__ = ["Prompt", "check_suite", "load_suite", "load_suites", "render_prompt"]
