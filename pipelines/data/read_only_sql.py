"""Analysts' SQL, read-only by construction: only a single query reaches the engine.

Text is accepted when Spark's own parser (the session's, so Delta's grammar is known too) reads
it both as a whole statement (``parsePlan``) and as nothing but a query (``parseQuery``, the
grammar's ``query`` rule: SELECT, WITH, VALUES, TABLE, FROM-first), and both give the same plan.
A DELETE, an INSERT hidden behind a WITH, a Delta VACUUM, a SET, an EXPLAIN of a write: none is
a query, so none is accepted, however it is spelled. A query is then refused if it calls out of
the engine: ``reflect``, ``java_method`` and ``try_reflect`` call any static Java method, and
``TRANSFORM ... USING`` runs a shell command.

Everything here only parses and analyses: a refused statement never runs, and an accepted one
runs only when its DataFrame is used.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from py4j.java_gateway import JavaObject
from py4j.protocol import Py4JJavaError
from pyspark.errors import ParseException
from pyspark.sql import DataFrame, SparkSession

from pipelines.core.errors import InvalidArgumentError

# Functions that call an arbitrary static Java method (System.exit, Runtime.exec, file I/O...).
JAVA_CALLING_FUNCTIONS = frozenset({"reflect", "java_method", "try_reflect"})

_QUERIES_ONLY = "sql runs queries only (SELECT, WITH, VALUES, TABLE)"
_JOBS_ONLY = "Tables change only through the jobs (ingest, score, train)."

# How a refused statement is named, by the class of its plan node; a command not listed here is
# named after its class (AddColumns -> ADD COLUMNS).
_STATEMENT_KINDS = {
    "DeleteFromTable": "DELETE",
    "UpdateTable": "UPDATE",
    "MergeIntoTable": "MERGE INTO",
    "InsertIntoDir": "INSERT OVERWRITE DIRECTORY",
    "CreateTable": "CREATE TABLE",
    "CreateTableAsSelect": "CREATE TABLE AS SELECT",
    "ReplaceTable": "REPLACE TABLE",
    "ReplaceTableAsSelect": "REPLACE TABLE AS SELECT",
    "CreateView": "CREATE VIEW",
    "CreateViewCommand": "CREATE VIEW",
    "CreateTempViewUsing": "CREATE TEMPORARY VIEW",
    "DropTable": "DROP TABLE",
    "DropView": "DROP VIEW",
    "TruncateTable": "TRUNCATE TABLE",
    "CacheTable": "CACHE TABLE",
    "CacheTableAsSelect": "CACHE TABLE",
    "UncacheTable": "UNCACHE TABLE",
    "RefreshTable": "REFRESH TABLE",
    "RefreshResource": "REFRESH",
    "SetCommand": "SET",
    "ResetCommand": "RESET",
    "SetVariable": "SET VARIABLE",
    "CreateVariable": "DECLARE VARIABLE",
    "AddJarsCommand": "ADD JAR",
    "AddFilesCommand": "ADD FILE",
    "AddArchivesCommand": "ADD ARCHIVE",
    "ExplainCommand": "EXPLAIN",
    "ExecuteImmediateQuery": "EXECUTE IMMEDIATE",
    "Call": "CALL",
    # Delta Lake's own statements
    "VacuumTableCommand": "VACUUM",
    "OptimizeTableCommand": "OPTIMIZE",
    "RestoreTableStatement": "RESTORE TABLE",
    "ConvertToDeltaCommand": "CONVERT TO DELTA",
    "DescribeDeltaHistory": "DESCRIBE HISTORY",
}

_CATALYST = "org.apache.spark.sql.catalyst"
_COMMAND = f"{_CATALYST}.plans.logical.Command"
_QUERY_PLAN = f"{_CATALYST}.plans.QueryPlan"
_PLAN_EXPRESSION = f"{_CATALYST}.expressions.PlanExpression"
# What reflect/java_method/try_reflect resolve to, whatever name reached them (IDENTIFIER(...)).
_REFLECTION_CLASSES = {f"{_CATALYST}.expressions.CallMethodViaReflection": "reflect",
                       f"{_CATALYST}.expressions.TryReflect": "try_reflect"}


class NotAQueryError(InvalidArgumentError):
    """The SQL text is not a single read-only query (it writes, defines, configures, or calls
    out of the engine); it was refused before anything ran."""


@dataclass(frozen=True)
class CheckedQuery:
    """SQL text that passed :func:`parse_read_only_query`, and its parsed (unresolved) plan."""

    text: str
    plan: JavaObject


def parse_read_only_query(spark: SparkSession, text: str) -> CheckedQuery:
    """Parse ``text`` and return it with its plan if it is one query, and nothing else.

    Nothing runs: no table is read, no Spark job starts.

    Example::

        checked = parse_read_only_query(spark, "SELECT txn_date, count(*) FROM transactions GROUP BY 1")
        parse_read_only_query(spark, "DELETE FROM transactions")   # NotAQueryError

    :raises ParseException: the text is not valid SQL (Spark's message).
    :raises NotAQueryError: it is valid SQL but not a single query, or the query calls
        ``reflect``, ``java_method``, ``try_reflect`` or ``TRANSFORM ... USING``.
    """
    # Spark takes `SELECT ...;` as one statement, but the `query` rule alone stops at the `;`.
    text = re.sub(r"[\s;]+\Z", "", text)
    parser = spark._jsparkSession.sessionState().sqlParser()
    try:
        # The full single-statement grammar: it ends at the end of the text, so `SELECT 1; DROP
        # TABLE t` is a parse error. Everything that can run, writes included, parses here.
        statement = parser.parsePlan(text)
    except Py4JJavaError as exc:
        # Errors that PySpark does not translate, such as SQL scripting's BEGIN ... END.
        raise NotAQueryError(_refusal(text, f"does not parse as a query ({_first_line(exc)})")) from exc
    try:
        # Only the `query` rule. It does not have to reach the end of the text, hence both parses.
        query = parser.parseQuery(text)
    except (ParseException, Py4JJavaError) as exc:
        raise NotAQueryError(_refusal(text, _not_a_query(spark, statement, exc))) from exc
    if _plan_text(query) != _plan_text(statement):
        raise NotAQueryError(_refusal(text, "does not parse as one single query"))
    called = _java_call_in(spark, statement)
    if called:
        raise NotAQueryError(_refusal(text, _calls_out(called)))
    return CheckedQuery(text=text, plan=statement)


def query_dataframe(spark: SparkSession, checked: CheckedQuery) -> DataFrame:
    """The result of a query from :func:`parse_read_only_query`, analysed but not yet run.

    This runs the checked plan itself rather than handing the text to ``spark.sql``, which would
    parse it again, possibly differently (SQL scripting, when enabled, reads text as a script):
    only what was checked can run.

    :raises AnalysisException: an unknown table, column or function (Spark's message).
    :raises NotAQueryError: once names are resolved, the query calls ``reflect``, ``java_method``
        or ``try_reflect`` (for example through ``IDENTIFIER('reflect')(...)``).
    """
    dataset = spark._jvm.org.apache.spark.sql.classic.Dataset
    # ofRows analyses the plan (commands would run here, eagerly; a checked query has none).
    jdf = dataset.ofRows(spark._jsparkSession, checked.plan)
    called = _java_call_in(spark, jdf.queryExecution().analyzed())
    if called:
        raise NotAQueryError(_refusal(checked.text, _calls_out(called)))
    return DataFrame(jdf, spark)


def _calls_out(called: str) -> str:
    return f"calls {called}, which runs code outside the query engine,"


def _refusal(text: str, what_it_is: str) -> str:
    return f"{_QUERIES_ONLY}; {_excerpt(text)} {what_it_is} and was not run. {_JOBS_ONLY}"


def _excerpt(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= width else flat[: width - 4] + " ...")


def _first_line(exc: Exception) -> str:
    if isinstance(exc, Py4JJavaError):
        message = str(exc.java_exception.getMessage())
    else:
        message = str(exc)
    return next((line.strip() for line in message.splitlines() if line.strip()), type(exc).__name__)


def _not_a_query(spark: SparkSession, statement: JavaObject, exc: Exception) -> str:
    kind = _statement_kind(spark, statement)
    if kind is None:
        return f"is not a single query ({_first_line(exc)})"
    article = "an" if kind[0] in "AEIOU" else "a"
    return f"is {article} {kind} statement"


def _statement_kind(spark: SparkSession, statement: JavaObject) -> str | None:
    """The first statement node from the top of the plan (a WITH or a multi-insert's union can
    stand above it), named as SQL names it; ``None`` when the plan holds none."""
    command = _jvm_class(spark, _COMMAND)
    pending = [statement]
    while pending:
        node = pending.pop(0)
        name = node.getClass().getSimpleName().rstrip("$")
        if name == "InsertIntoStatement":
            return "INSERT OVERWRITE" if node.overwrite() else "INSERT INTO"
        if name in _STATEMENT_KINDS:
            return _STATEMENT_KINDS[name]
        if command.isInstance(node):
            words = re.findall(r"[A-Z][a-z]*", re.sub(r"(Command|Statement)$", "", name))
            return " ".join(words).upper() or name
        pending += _scala_list(node.children())
    return None


def _plan_text(plan: JavaObject) -> str:
    """The whole plan as text, with what differs between two parses of the same text removed:
    expression ids (``x#12``) and the identity of builder functions (``Lambda$1/0x...@1f94``)."""
    text = plan.treeString(True, False, 2**31 - 1, False)  # verbose, no field limit
    text = re.sub(r"#\d+", "#", text)
    return re.sub(r"\$\$Lambda\S*?@[0-9a-f]+", "$$Lambda", text)


def _java_call_in(spark: SparkSession, plan: JavaObject) -> str | None:
    """Which call out of the engine ``plan`` makes anywhere (``reflect``, ...), or ``None``."""
    for node in _tree_nodes(spark, plan):
        class_name = node.getClass().getName()
        simple_name = class_name.rsplit(".", 1)[-1]
        if simple_name == "UnresolvedFunction":
            name = str(node.nameParts().last()).lower()
        elif simple_name == "UnresolvedGenerator":
            name = str(node.name().funcName()).lower()
        elif simple_name == "ScriptTransformation":
            return "TRANSFORM ... USING (a shell command)"
        else:
            name = _REFLECTION_CLASSES.get(class_name, "")
        if name in JAVA_CALLING_FUNCTIONS:
            return name
    return None


def _tree_nodes(spark: SparkSession, root: JavaObject) -> Iterator[JavaObject]:
    """Every node of a plan: its operators, their expressions, and the plans inside those
    (subqueries in WHERE or SELECT, CTE definitions, lateral subqueries), at any depth."""
    query_plan = _jvm_class(spark, _QUERY_PLAN)
    plan_expression = _jvm_class(spark, _PLAN_EXPRESSION)
    identity = spark._jvm.java.lang.System.identityHashCode
    # A subquery is reachable both as an operator's inner child and through its expression; a
    # node seen before is skipped so that nesting does not multiply the work.
    seen: dict[int, list[JavaObject]] = {}
    pending = [root]
    while pending:
        node = pending.pop()
        same_hash = seen.setdefault(identity(node), [])
        if any(node.equals(other) for other in same_hash):
            continue
        same_hash.append(node)
        yield node
        pending += _scala_list(node.children())
        if query_plan.isInstance(node):
            # innerChildren: the subqueries' plans, and a WITH's definitions (not its children).
            pending += _scala_list(node.expressions()) + _scala_list(node.innerChildren())
        elif plan_expression.isInstance(node):
            pending.append(node.plan())


def _scala_list(seq: JavaObject) -> list[JavaObject]:
    return [seq.apply(index) for index in range(seq.size())]


def _jvm_class(spark: SparkSession, name: str) -> JavaObject:
    return spark._jvm.java.lang.Class.forName(name)
