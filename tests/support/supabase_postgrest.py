"""The PostgREST side of the Supabase stand-in: the error bodies and the query language (the
subset the adapter uses), turned into one SQL statement over public.items. Nothing here knows
which rows belong to whom: row level security in the real migration decides."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


def pgrst_error(status: int, code: str, message: str, details: str | None = None,
                headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "details": details, "hint": None, "message": message},
                        status_code=status, headers=headers)


def sql_error_response(stderr: str, role: str) -> Response:
    match = re.search(r"ERROR:\s+([0-9A-Z]{5}):\s+(.*)", stderr)
    if not match:
        return pgrst_error(500, "PGRST000", stderr.strip())
    code, message = match.group(1), match.group(2).strip()
    status = {"42501": 401 if role == "anon" else 403, "23503": 409, "23505": 409,
              "P0001": 400}.get(code)
    if status is None:
        status = 400 if code[:2] in ("22", "23") else 500
    return pgrst_error(status, code, message)


# -- PostgREST query language (the subset the adapter uses)

IDENT = re.compile(r"[a-z_][a-z0-9_]*\Z")
OPS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
       "like": "like", "ilike": "ilike"}
RESERVED = {"select", "order", "limit", "offset", "or", "columns"}


class QueryError(Exception):
    pass


def ident(name: str) -> str:
    if not IDENT.match(name):
        raise QueryError(f'"failed to parse {name}"')
    return f'"{name}"'


def split_logic(text: str) -> list[str]:
    """Split `a.ilike."x,y",b.eq.1` on commas outside double quotes (PostgREST's or= syntax)."""
    parts, current, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif quoted and ch == "\\":
            current.append(ch)
            escaped = True
        elif ch == '"':
            quoted = not quoted
            current.append(ch)
        elif ch == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


@dataclass
class Query:
    sql: str
    variables: dict[str, str]
    method: str
    count: bool
    representation: bool
    offset: int

    def respond(self, result: dict) -> Response:
        rows = result["body"]
        total = result.get("total")
        headers = {}
        if self.method == "GET":
            if total is not None and self.offset > total:
                return pgrst_error(
                    416, "PGRST103", "Requested range not satisfiable",
                    f"An offset of {self.offset} was requested, but there are only {total} rows.",
                    headers={"content-range": f"*/{total}"})
            shown = f"{self.offset}-{self.offset + len(rows) - 1}" if rows else "*"
            headers["content-range"] = f"{shown}/{total if total is not None else '*'}"
            partial = total is not None and len(rows) < total
            return JSONResponse(rows, status_code=206 if partial else 200, headers=headers)
        status = 201 if self.method == "POST" else 200
        if not self.representation:
            counted = {"content-range": f"*/{len(rows)}"} if self.count else {}
            return Response(status_code=201 if self.method == "POST" else 204, headers=counted)
        return JSONResponse(rows, status_code=status)


def parse_query(request: Request, raw_body: bytes) -> Query:
    params = request.query_params
    prefer = {p.strip() for p in request.headers.get("prefer", "").split(",")}
    variables: dict[str, str] = {}

    def var(value: str) -> str:
        name = f"v{len(variables)}"
        variables[name] = value
        return f":'{name}'"

    def condition(column: str, expr: str) -> str:
        op, _, value = expr.partition(".")
        negate = op == "not"
        if negate:
            op, _, value = value.partition(".")
        if op == "is" and value in ("null", "true", "false"):
            sql = f"{ident(column)} is {value}"
        elif op in OPS:
            value = unquote(value)
            if op in ("like", "ilike"):
                value = value.replace("*", "%")
            sql = f"{ident(column)} {OPS[op]} {var(value)}"
        else:
            raise QueryError(f'"failed to parse filter ({expr})"')
        return f"not ({sql})" if negate else sql

    where = []
    for key, value in params.multi_items():
        if key == "or":
            if not (value.startswith("(") and value.endswith(")")):
                raise QueryError('"failed to parse logic tree"')
            terms = []
            for term in split_logic(value[1:-1]):
                column, _, expr = term.partition(".")
                terms.append(condition(column, expr))
            where.append("(" + " or ".join(terms) + ")")
        elif key not in RESERVED:
            where.append(condition(key, value))
    where_sql = " and ".join(where) or "true"

    select = params.get("select", "*")
    columns = "*" if select == "*" else ", ".join(ident(c) for c in select.split(","))
    order = []
    for part in filter(None, params.get("order", "").split(",")):
        column, *mods = part.split(".")
        direction = {"asc": "asc", "desc": "desc"}
        nulls = {"nullsfirst": "nulls first", "nullslast": "nulls last"}
        words = [direction.get(m) or nulls.get(m) for m in mods]
        if None in words:
            raise QueryError(f'"failed to parse order ({part})"')
        order.append(" ".join([ident(column), *words]))
    order_sql = f" order by {', '.join(order)}" if order else ""
    try:
        limit = int(params["limit"]) if "limit" in params else None
        offset = int(params.get("offset", "0"))
    except ValueError as e:
        raise QueryError('"failed to parse limit/offset"') from e
    page_sql = (f" limit {limit}" if limit is not None else "") + f" offset {offset}"
    count = "count=exact" in prefer
    representation = "return=representation" in prefer
    agg = "coalesce((select json_agg(t) from ({inner}) t), '[]'::json)"
    method = request.method

    if method == "GET":
        total = "(select count(*) from pgrst_source)" if count else "null"
        inner = f"select {columns} from pgrst_source{order_sql}{page_sql}"
        sql = (f"with pgrst_source as (select * from public.items where {where_sql}) "
               f"select json_build_object('total', {total}, 'body', {agg.format(inner=inner)})")
        return Query(sql, variables, method, count, True, offset)

    if method == "DELETE":
        mutation = f"delete from public.items where {where_sql} returning *"
    else:
        try:
            body = json.loads(raw_body or b"null")
        except ValueError as e:
            raise QueryError('"Empty or invalid json"') from e
        rows = body if isinstance(body, list) else [body]
        if not rows or not all(isinstance(r, dict) for r in rows):
            raise QueryError('"Empty or invalid json"')
        keys = sorted({k for r in rows for k in r})
        cols = ", ".join(ident(k) for k in keys)
        if method == "POST":
            mutation = (f"insert into public.items ({cols}) select {cols} from "
                        f"json_populate_recordset(null::public.items, {var(json.dumps(rows))}) "
                        "returning *")
        else:
            mutation = (f"update public.items set ({cols}) = (select {cols} from "
                        f"json_populate_record(null::public.items, {var(json.dumps(rows[0]))})) "
                        f"where {where_sql} returning *")
    inner = f"select {columns} from pgrst_source"
    sql = (f"with pgrst_source as ({mutation}) "
           f"select json_build_object('body', {agg.format(inner=inner)})")
    return Query(sql, variables, method, count, representation, offset)
