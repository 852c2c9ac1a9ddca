"""The parsed expression tree: :class:`Feature`, :class:`Const` and :class:`Op` nodes.

Shared by the parser (which builds trees) and the operator table (which checks their arguments);
it imports neither, so the two do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Const", "Expression", "Feature", "Op", "Operand"]


class Expression:
    """Base class of parsed expression nodes; ``str(node)`` is the canonical form (memo key)."""

    __slots__ = ()

    def children(self) -> tuple[Expression, ...]:
        return ()


@dataclass(frozen=True, eq=True)
class Feature(Expression):
    """A stored field: ``$close`` (``pit=True`` for ``$$field``)."""

    name: str
    pit: bool = False

    def __str__(self) -> str:
        return ("$$" if self.pit else "$") + self.name


@dataclass(frozen=True, eq=True)
class Const(Expression):
    """A literal number or string argument."""

    value: float | int | str

    def __str__(self) -> str:
        return repr(self.value)


Operand = Expression | float | int | str


@dataclass(frozen=True, eq=True)
class Op(Expression):
    """An operator call; ``args`` holds sub-expressions and literal parameters (as :class:`Const`)."""

    name: str
    args: tuple[Expression, ...]

    def __str__(self) -> str:
        return f"{self.name}({','.join(str(a) for a in self.args)})"

    def children(self) -> tuple[Expression, ...]:
        return tuple(a for a in self.args if not isinstance(a, Const))
