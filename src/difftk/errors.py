"""Errors a user can cause. The CLI prints their message as one sentence, no traceback."""


class DifftkError(Exception):
    """Base of every error caused by input: a recipe, a path, a checkpoint, a plugin."""

    exit_code = 1


class RecipeError(DifftkError):
    """A recipe that does not validate; carries one (path, message) pair per problem."""

    exit_code = 2

    def __init__(self, problems: list[tuple[str, str]], source: str = "recipe"):
        self.problems = problems
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.source}: {path}: {msg}" if path else f"{self.source}: {msg}"
                 for path, msg in self.problems]
        return "\n".join(lines)


class UnknownComponentError(DifftkError):
    """A component name that no installed plugin provides."""

    exit_code = 2


class ComponentError(DifftkError):
    """A component's own code failed on its input (a built-in's, or a plugin's: PluginError)."""


class PluginError(ComponentError):
    """A plugin that breaks the contract (duplicate name, wrong base class, a crash or a
    wrong result in its code); the message names the plugin."""


class CheckpointError(DifftkError):
    """A checkpoint that is missing, truncated or does not match the recipe."""


class DataError(DifftkError):
    """A data path that is missing or a file that is malformed."""


class DataUnavailable(DataError):
    """The data set could not be read during training (a shard or file gone or damaged):
    the run stops with a checkpoint, to resume once the data is back."""


class TrainingDivergedError(DifftkError):
    """The loss or the gradients became non-finite."""


def with_article(noun: str) -> str:
    """ "a sampler", "an architecture", "an EMA": the article by the noun's first letter."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def quoted(text: str) -> str:
    """A user's string in double quotes, or as repr when it holds a newline, NUL or the
    like, so that a message stays one line whatever was typed."""
    return f'"{text}"' if text.isprintable() else repr(text)
