"""A query's shape before it runs: the pagination rules GitHub enforces on every connection, the
node count and the point cost (docs: "Rate limits and query limits for the GraphQL API").

- A connection that lists (selects ``nodes`` or ``edges``) needs ``first`` or ``last``
  (``MISSING_PAGINATION_BOUNDARIES``), at most 100 (``EXCESSIVE_PAGINATION``; the fake also
  refuses values below 1). Asking only for ``totalCount`` needs no boundary.
- Node count: for each connection, the product of the page sizes down its path; a query may ask
  for 500,000 nodes at most (``MAX_NODE_LIMIT_EXCEEDED``).
- Cost: for each connection, the number of requests needed to fill it (the product of the page
  sizes of the connections above it), summed, divided by 100 and rounded to the nearest whole
  number, at least 1. 50 PRs with three nested connections of 100: 1 + 50 * 3 = 151 requests,
  2 points, 15,050 nodes.

Each occurrence of a connection in the document counts, fragments expanded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
)

MAX_PAGE = 100
MAX_NODES = 500_000


@dataclass
class QueryShape:
    """What :func:`analyse` found: top-level field names, cost, node count and the pagination
    errors (GitHub-shaped dicts; the query is refused when there are any)."""

    fields: tuple[str, ...] = ()
    requests: int = 0
    node_count: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cost(self) -> int:
        return max(1, int(self.requests / 100 + 0.5))


def analyse(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
) -> QueryShape:
    """The shape of a validated ``operation`` run with the raw JSON ``variables``."""
    defaults = {
        d.variable.name.value: _int(d.default_value, {})
        for d in operation.variable_definitions or ()
    }
    walker = _Walker(schema, fragments, {**defaults, **variables})
    root = schema.query_type
    assert root is not None
    walker.walk(operation.selection_set, root, 1, [])
    shape = walker.shape
    shape.fields = tuple(dict.fromkeys(_top_fields(operation.selection_set, fragments)))
    if not shape.errors and shape.node_count > MAX_NODES:
        shape.errors.append(
            {
                "type": "MAX_NODE_LIMIT_EXCEEDED",
                "message": f"This query requests up to {shape.node_count:,} possible nodes "
                f"which exceeds the maximum limit of {MAX_NODES:,}.",
            }
        )
    return shape


class _Walker:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.shape = QueryShape()

    def walk(
        self, selections: SelectionSetNode, parent: GraphQLNamedType, mult: int, path: list[str]
    ) -> None:
        for sel in selections.selections:
            if isinstance(sel, FieldNode):
                self._field(sel, parent, mult, path)
            elif isinstance(sel, InlineFragmentNode):
                cond = sel.type_condition
                target = self.schema.get_type(cond.name.value) if cond else parent
                self.walk(sel.selection_set, target or parent, mult, path)
            elif isinstance(sel, FragmentSpreadNode):
                frag = self.fragments[sel.name.value]
                target = self.schema.get_type(frag.type_condition.name.value)
                self.walk(frag.selection_set, target or parent, mult, path)

    def _field(self, node: FieldNode, parent: GraphQLNamedType, mult: int, path: list[str]) -> None:
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return
        definition = parent.fields.get(node.name.value)
        if definition is None or node.selection_set is None:
            return
        named = get_named_type(definition.type)
        here = [*path, node.alias.value if node.alias else node.name.value]
        if _is_connection(named):
            mult = self._connection(node, definition, mult, here)
        self.walk(node.selection_set, named, mult, here)

    def _connection(
        self, node: FieldNode, definition: GraphQLField, mult: int, path: list[str]
    ) -> int:
        args = {a.name.value: a.value for a in node.arguments or ()}
        first = _int(args.get("first"), self.variables) if "first" in definition.args else None
        last = _int(args.get("last"), self.variables) if "last" in definition.args else None
        name = node.name.value
        self.shape.requests += mult
        if first is None and last is None:
            if self._lists(node.selection_set):
                self._error(
                    "MISSING_PAGINATION_BOUNDARIES",
                    f"You must provide a `first` or `last` value to properly paginate the "
                    f"`{name}` connection.",
                    node,
                    path,
                )
            return mult
        for arg, value in (("first", first), ("last", last)):
            if isinstance(value, int) and value > MAX_PAGE:
                self._error(
                    "EXCESSIVE_PAGINATION",
                    f"Requesting {value} records on the `{name}` connection exceeds the "
                    f"`{arg}` limit of {MAX_PAGE} records.",
                    node,
                    path,
                )
            elif isinstance(value, int) and value < 1:
                self._error(
                    "EXCESSIVE_PAGINATION",
                    f"Requesting {value} records on the `{name}` connection is below the "
                    f"`{arg}` minimum of 1 record.",
                    node,
                    path,
                )
        size = first if isinstance(first, int) else (last if isinstance(last, int) else 0)
        self.shape.node_count += mult * size
        if mult * size > MAX_NODES and not self.shape.errors:
            self._error(
                "MAX_NODE_LIMIT_EXCEEDED",
                f"By the time this query traverses to the {name} connection, it is requesting "
                f"up to {mult * size:,} possible nodes which exceeds the maximum limit of "
                f"{MAX_NODES:,}.",
                node,
                path,
            )
        return mult * max(size, 1)

    def _lists(self, selections: SelectionSetNode | None) -> bool:
        if selections is None:
            return False
        for sel in selections.selections:
            if isinstance(sel, FieldNode) and sel.name.value in ("nodes", "edges"):
                return True
            if isinstance(sel, InlineFragmentNode) and self._lists(sel.selection_set):
                return True
            if isinstance(sel, FragmentSpreadNode) and self._lists(
                self.fragments[sel.name.value].selection_set
            ):
                return True
        return False

    def _error(self, kind: str, message: str, node: FieldNode, path: list[str]) -> None:
        error: dict[str, Any] = {"type": kind, "path": path, "message": message}
        if node.loc is not None:
            loc = node.loc.source.get_location(node.loc.start)
            error["locations"] = [{"line": loc.line, "column": loc.column}]
        self.shape.errors.append(error)


def _is_connection(named: GraphQLNamedType) -> bool:
    return (
        isinstance(named, GraphQLObjectType)
        and named.name.endswith("Connection")
        and "pageInfo" in named.fields
    )


def _int(value: ValueNode | None, variables: dict[str, Any]) -> int | None:
    """An Int argument's value; ``None`` when absent, null or not an int (a wrongly typed
    variable is left for execution to report)."""
    if isinstance(value, IntValueNode):
        return int(value.value)
    if isinstance(value, VariableNode):
        raw = variables.get(value.name.value)
        return raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    return None


def _top_fields(
    selections: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode]
) -> list[str]:
    names: list[str] = []
    for sel in selections.selections:
        if isinstance(sel, FieldNode):
            names.append(sel.name.value)
        elif isinstance(sel, InlineFragmentNode):
            names += _top_fields(sel.selection_set, fragments)
        elif isinstance(sel, FragmentSpreadNode):
            names += _top_fields(fragments[sel.name.value].selection_set, fragments)
    return names
