{#-
  Lineage records: what the hooks tell Lacuna, one JSON object each.

  Every record goes out by two transports that carry the same text:
    * a dbt log line `lacuna.record {json}` (debug level: in logs/dbt.log and in the event
      stream a dbtRunner callback sees; the `lacuna dbt` wrapper reads them live), and
    * a row in the outbox table (see outbox.sql), unless var lacuna_outbox is false.

  Record kinds: run_start (register_run), model (track_lineage), run_end (verify_compliance).
  `lacuna_orchestration.integrations.dbt.records` parses them; the fields are documented there.

  These macros run once per model, so they are written to call few other macros: each dbt
  macro call costs tens of microseconds, which adds up over hundreds of models.
-#}

{#- The fields every record starts with: who, where, when, which run. Target fields name where
    relations live (never credentials). -#}
{% macro envelope(kind, unique_id) %}
  {%- set where = {} -%}
  {%- for key in ["type", "name", "host", "port", "path", "database", "schema", "user", "dbname"] -%}
    {%- if target.get(key) is not none -%}{%- do where.update({key: target.get(key)}) -%}{%- endif -%}
  {%- endfor -%}
  {{ return({
      "v": 1,
      "kind": kind,
      "record_id": invocation_id ~ ":" ~ kind ~ ":" ~ unique_id,
      "invocation_id": invocation_id,
      "unique_id": unique_id,
      "recorded_at": modules.datetime.datetime.now(modules.pytz.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
      "project": project_name,
      "lacuna": var("lacuna", none),
      "target": where,
      "user": var("lacuna_user", none) or target.get("user") or env_var("USER", "unknown"),
  }) }}
{% endmacro %}


{#- The relations a node reads: its ref/source parents, looking through ephemeral models (they
    are CTEs, not relations) to what they read; each with where it lives and what it declares. -#}
{% macro relation_parents(node) %}
  {%- set queue = [] -%}
  {%- for uid in node.depends_on.nodes -%}{%- do queue.append(uid) -%}{%- endfor -%}
  {%- set seen = [] -%}
  {%- set parents = [] -%}
  {%- for uid in queue -%}
    {%- if uid not in seen -%}
      {%- do seen.append(uid) -%}
      {%- set parent = graph.nodes.get(uid) or graph.sources.get(uid) -%}
      {%- set config = (parent.config if parent is not none and parent.config is mapping else {}) -%}
      {%- if parent is none -%}
        {#- a function or another dependency that is not a relation -#}
      {%- elif parent.resource_type == "model" and config.get("materialized") == "ephemeral" -%}
        {%- for grand in parent.depends_on.nodes -%}{%- do queue.append(grand) -%}{%- endfor -%}
      {%- elif parent.resource_type in ["model", "seed", "snapshot", "source"] -%}
        {#- declared columns only for sources: models, seeds and snapshots describe themselves
            in their own records -#}
        {%- set columns = {} -%}
        {%- if parent.resource_type == "source" -%}
          {%- for name, col in (parent.columns or {}).items() -%}
            {%- do columns.update({name: {"type": col.data_type, "meta": col.meta or {}}}) -%}
          {%- endfor -%}
        {%- endif -%}
        {%- do parents.append({
            "unique_id": uid,
            "resource_type": parent.resource_type,
            "name": parent.name,
            "database": parent.database,
            "schema": parent.schema,
            "identifier": parent.alias or parent.identifier or parent.name,
            "config_schema": config.get("schema"),
            "materialized": config.get("materialized"),
            "meta": config.get("meta") or parent.meta or {},
            "columns": columns,
        }) -%}
      {%- endif -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(parents) }}
{% endmacro %}


{#- The columns of a built relation as the warehouse reports them: [{name, type}, ...]. -#}
{% macro relation_columns(relation) %}
  {{ return(adapter.dispatch("relation_columns", "lacuna")(relation)) }}
{% endmacro %}

{% macro default__relation_columns(relation) %}
  {%- set columns = [] -%}
  {%- for col in adapter.get_columns_in_relation(relation) -%}
    {%- do columns.append({"name": col.name, "type": col.data_type}) -%}
  {%- endfor -%}
  {{ return(columns) }}
{% endmacro %}

{#- DuckDB: the DESCRIBE that dbt-duckdb's get_columns_in_relation runs, read directly - without
    the macro and column-object layers around it, a third of the cost per model. -#}
{% macro duckdb__relation_columns(relation) %}
  {%- set columns = [] -%}
  {%- for row in adapter.execute("describe " ~ relation, fetch=True)[1].rows -%}
    {%- do columns.append({"name": row[0], "type": row[1]}) -%}
  {%- endfor -%}
  {{ return(columns) }}
{% endmacro %}


{#- Send a record by the log transport; returns its JSON text (what the outbox stores). -#}
{% macro send(record) %}
  {%- set payload = tojson(record) -%}
  {%- do log("lacuna.record " ~ payload, info=false) -%}
  {{ return(payload) }}
{% endmacro %}


{#- SQL that stores a record in the outbox, or "" when the outbox is off or missing (the log
    line already carried the record; a missing outbox is created by register_run). -#}
{% macro store(record, payload, known_outbox=none) %}
  {%- if (var("lacuna_outbox", true) | string | trim | lower) not in ["1", "true", "yes", "on"] -%}
    {{ return("") }}
  {%- endif -%}
  {%- set rel = known_outbox if known_outbox is not none else lacuna.find_outbox() -%}
  {%- if rel is none -%}{{ return("") }}{%- endif -%}
  {{ return(lacuna.outbox_insert_sql(rel, record, payload)) }}
{% endmacro %}
