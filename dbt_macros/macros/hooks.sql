{#-
  The four hooks. Wire them in dbt_project.yml:

    on-run-start: ["{{ lacuna.register_run() }}"]
    on-run-end:   ["{{ lacuna.verify_compliance() }}"]
    models:
      my_project:
        +pre-hook:  "{{ lacuna.gate() }}"
        +post-hook: "{{ lacuna.track_lineage() }}"
    seeds:
      my_project:
        +post-hook: "{{ lacuna.track_lineage() }}"
-#}


{#- on-run-start: open a governed run. Checks every selected node's meta first (an unknown tier
    stops the run before anything builds), creates the outbox on the first run, warns (or, with
    lacuna_strict, fails) when no Lacuna wrapper governs this run, and records run_start with the
    invocation id, Lacuna's run id, target and user. -#}
{% macro register_run() %}
  {%- if not execute -%}{{ return("") }}{%- endif -%}
  {%- set s = lacuna.settings() -%}
  {%- for uid in selected_resources -%}
    {%- set node = graph.nodes.get(uid) -%}
    {%- if node is not none -%}{%- do lacuna.validate_meta(node) -%}{%- endif -%}
  {%- endfor -%}
  {%- if not s.governed -%}
    {%- set message = "Lacuna: this dbt run is not governed (no policy decisions were passed in); "
        ~ "lineage records go to " ~ (lacuna.outbox_relation() if s.outbox else "the dbt log")
        ~ " for `lacuna dbt collect`. Run it as `lacuna dbt " ~ flags.WHICH
        ~ "` to gate models, or set var lacuna_strict: true to refuse ungoverned runs." -%}
    {%- if s.strict -%}
      {%- do exceptions.raise_compiler_error(message) -%}
    {%- else -%}
      {%- do exceptions.warn(message) -%}
    {%- endif -%}
  {%- endif -%}
  {%- set outbox = lacuna.ensure_outbox() if s.outbox else none -%}
  {%- set record = lacuna.envelope("run_start", project_name) -%}
  {%- do record.update({
      "command": flags.WHICH,
      "run_started_at": run_started_at.isoformat(),
      "selected": selected_resources | list,
      "dbt_version": dbt_version,
  }) -%}
  {%- set insert = lacuna.store(record, lacuna.send(record), outbox) -%}
  {%- if insert -%}
    {#- executed here and committed: SQL a start hook returns is not committed on every adapter -#}
    {%- do lacuna.write(insert) -%}
  {%- endif -%}
  {{ return("") }}
{% endmacro %}


{#- pre-hook: stop a model the Lacuna wrapper found denied by policy, with the policy's message
    (var lacuna_denied, {unique_id: message}). Renders no SQL. (Meta is checked once for every
    selected node by register_run, not again per model.) -#}
{% macro gate() %}
  {%- if execute -%}
    {%- set denied = var("lacuna_denied", {}) -%}
    {%- if denied is mapping and model.unique_id in denied -%}
      {%- do exceptions.raise_compiler_error(denied[model.unique_id]) -%}
    {%- endif -%}
  {%- endif -%}
  {{ return("") }}
{% endmacro %}


{#- post-hook: record what was built - the relation, its ref/source parents, its columns as the
    warehouse has them now (relation_columns: adapter.get_columns_in_relation, or DESCRIBE on
    DuckDB - not only schema.yml) and its meta.
    Returns the outbox insert (run inside the model's transaction), or "" without an outbox. -#}
{% macro track_lineage() %}
  {%- if not execute -%}{{ return("") }}{%- endif -%}
  {%- set config = model.config -%}
  {%- set columns = lacuna.relation_columns(this) if config.materialized != "ephemeral" else [] -%}
  {%- set declared = {} -%}
  {%- for name, col in (model.columns or {}).items() -%}
    {%- do declared.update({name: {"type": col.data_type | default(none),
                                   "meta": (col.meta | default(none)) or {}}}) -%}
  {%- endfor -%}
  {%- set code = (model.compiled_code | default(none)) or (model.raw_code | default(none)) or "" -%}
  {%- set record = lacuna.envelope("model", model.unique_id) -%}
  {%- do record.update({
      "resource_type": model.resource_type,
      "name": model.name,
      "package": model.package_name | default(none),
      "relation": {"database": this.database, "schema": this.schema, "identifier": this.identifier},
      "config_schema": config.schema | default(none),
      "materialized": config.materialized | default(none),
      "meta": (config.meta | default(none)) or {},
      "parents": lacuna.relation_parents(model),
      "columns": columns,
      "declared_columns": declared,
      "grouped": modules.re.search("\\bgroup\\s+by\\b", code, modules.re.IGNORECASE) is not none,
  }) -%}
  {{ return(lacuna.store(record, lacuna.send(record))) }}
{% endmacro %}


{#- on-run-end: fail the invocation when a model built in this run was denied by policy or
    violates its declared floor (both decided by the Lacuna wrapper and passed in as vars
    lacuna_denied / lacuna_floor_violations), report the models the gate stopped, and record
    run_end with every result's status (so `lacuna dbt collect` can emit FAIL events). -#}
{% macro verify_compliance() %}
  {%- if not execute -%}{{ return("") }}{%- endif -%}
  {%- set s = lacuna.settings() -%}
  {%- set denied = var("lacuna_denied", {}) -%}
  {%- set floors = var("lacuna_floor_violations", {}) -%}
  {%- set statuses = [] -%}
  {%- set violations = [] -%}
  {%- set stopped = [] -%}
  {%- for r in results -%}
    {%- set uid = r.node.unique_id -%}
    {%- set status = r.status | string -%}
    {%- do statuses.append({"unique_id": uid, "resource_type": r.node.resource_type,
                            "status": status, "message": (r.message or "") | string | truncate(500)}) -%}
    {%- set built = r.node.resource_type in ["model", "seed", "snapshot"] and status in ["success", "pass"] -%}
    {%- if uid in denied -%}
      {%- if built -%}
        {%- do violations.append(uid ~ " was built although policy denies it:\n" ~ denied[uid]) -%}
      {%- else -%}
        {%- do stopped.append(uid) -%}
      {%- endif -%}
    {%- endif -%}
    {%- if built and uid in floors -%}
      {%- do violations.append(uid ~ " violates its declared floor: " ~ floors[uid]) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if stopped -%}
    {%- do log("Lacuna: the policy gate stopped " ~ (stopped | length) ~ " model(s): " ~ (stopped | join(", ")), info=true) -%}
  {%- endif -%}
  {%- set record = lacuna.envelope("run_end", project_name) -%}
  {%- do record.update({
      "command": flags.WHICH,
      "results": statuses,
      "violations": violations,
      "stopped": stopped,
  }) -%}
  {%- set insert = lacuna.store(record, lacuna.send(record)) -%}
  {%- if insert -%}
    {%- do lacuna.write(insert) -%}
  {%- endif -%}
  {%- if violations -%}
    {{ return(lacuna.fail_sql("Lacuna compliance check failed for " ~ (violations | length)
        ~ " model(s):\n" ~ (violations | join("\n\n")))) }}
  {%- endif -%}
  {%- if not s.governed and s.strict -%}
    {{ return(lacuna.fail_sql("Lacuna: compliance cannot be verified for an ungoverned run (lacuna_strict is set); run it with `lacuna dbt " ~ flags.WHICH ~ "`")) }}
  {%- endif -%}
  {%- do log("Lacuna: compliance verified for " ~ (results | length) ~ " result(s)" ~ ("" if s.governed else " (ungoverned run: no policy decisions to check)"), info=true) -%}
  {{ return("") }}
{% endmacro %}


{#- SQL that fails with `message` when the hook executes it. A failing hook statement (rather than
    a Jinja exception) lets dbt finish cleanly: every result is kept in run_results.json, the hook
    is reported as failed with the message, and the exit code is 1. -#}
{% macro fail_sql(message) %}
  {{ return(adapter.dispatch("fail_sql", "lacuna")(message)) }}
{% endmacro %}

{% macro duckdb__fail_sql(message) %}
  {{ return("select error(" ~ lacuna.sql_string(message) ~ ")") }}
{% endmacro %}

{% macro postgres__fail_sql(message) %}
  {{ return("do $lacuna$ begin raise exception using message = " ~ lacuna.sql_string(message) ~ "; end $lacuna$") }}
{% endmacro %}

{% macro default__fail_sql(message) %}
  {%- do exceptions.raise_compiler_error(message) -%}
{% endmacro %}
