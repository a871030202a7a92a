{#-
  The outbox: one table in the warehouse, `<lacuna_schema>.<lacuna_table>` (default
  `lacuna.events`), where the hooks leave one JSON record per governed step. A model's record is
  inserted by its post-hook, inside the model's own transaction on adapters that have them, so
  a record exists exactly when the model was built. `lacuna dbt collect` reads the records
  (`run-operation lacuna.outbox_dump`), ingests them into Lacuna and then deletes what it
  ingested (`run-operation lacuna.outbox_ack`).

  Every statement here is plain SQL that DuckDB and PostgreSQL both accept; adapters with other
  string-literal rules override `sql_string` or `outbox_ddl` through dispatch
  (`<adapter>__sql_string`).
-#}

{% macro outbox_relation() %}
  {{ return(api.Relation.create(database=target.database,
                                schema=var("lacuna_schema", "lacuna"),
                                identifier=var("lacuna_table", "events"), type="table")) }}
{% endmacro %}


{#- The outbox when it exists, else none. Uses dbt's relation cache, so after the first lookup
    (or after register_run created it) it costs no query. -#}
{% macro find_outbox() %}
  {%- set rel = lacuna.outbox_relation() -%}
  {{ return(adapter.get_relation(database=rel.database, schema=rel.schema, identifier=rel.identifier)) }}
{% endmacro %}


{#- Create the outbox schema and table when missing (called once per run by register_run). -#}
{% macro ensure_outbox() %}
  {%- set rel = lacuna.outbox_relation() -%}
  {%- if lacuna.find_outbox() is none -%}
    {%- do adapter.create_schema(rel) -%}
    {%- do lacuna.write(lacuna.outbox_ddl(rel)) -%}
    {%- do adapter.cache_added(rel) -%}
    {%- do log("Lacuna: created the outbox table " ~ rel, info=true) -%}
  {%- endif -%}
  {{ return(rel) }}
{% endmacro %}


{#- Run a writing statement in a transaction of its own and commit it. (`run_query` does not
    begin a transaction, so committing after it fails on PostgreSQL outside a model.) -#}
{% macro write(sql) %}
  {%- call statement("lacuna_write", auto_begin=true) -%}{{ sql }}{%- endcall -%}
  {%- do adapter.commit() -%}
{% endmacro %}


{% macro outbox_ddl(relation) %}
  {{ return(adapter.dispatch("outbox_ddl", "lacuna")(relation)) }}
{% endmacro %}

{% macro default__outbox_ddl(relation) %}
create table if not exists {{ relation }} (
    record_id     varchar(400) not null,
    invocation_id varchar(64)  not null,
    kind          varchar(32)  not null,
    unique_id     varchar(512) not null,
    recorded_at   varchar(40)  not null,
    payload       text         not null
)
{% endmacro %}


{% macro sql_string(value) %}
  {{ return(adapter.dispatch("sql_string", "lacuna")(value)) }}
{% endmacro %}

{#- Standard SQL literal: quotes doubled. DuckDB and PostgreSQL (standard_conforming_strings,
    the default since 9.1) read backslashes literally, so nothing else needs escaping. -#}
{% macro default__sql_string(value) %}
  {{ return("'" ~ (value | string | replace("'", "''")) ~ "'") }}
{% endmacro %}


{% macro outbox_insert_sql(relation, record, payload) %}
  {{ return(adapter.dispatch("outbox_insert_sql", "lacuna")(relation, record, payload)) }}
{% endmacro %}

{#- (Literals quoted inline, as default__sql_string does: one macro call per record, not six.) -#}
{% macro default__outbox_insert_sql(relation, record, payload) %}
  {%- set literals = [] -%}
  {%- for value in [record.record_id, record.invocation_id, record.kind, record.unique_id,
                    record.recorded_at, payload] -%}
    {%- do literals.append("'" ~ (value | string | replace("'", "''")) ~ "'") -%}
  {%- endfor -%}
  {{ return("insert into " ~ relation ~ " (record_id, invocation_id, kind, unique_id, recorded_at, payload) values ("
            ~ (literals | join(", ")) ~ ")") }}
{% endmacro %}


{#- run-operation: print every record still in the outbox as a `lacuna.record` log line, oldest
    first (what `lacuna dbt collect` reads). -#}
{% macro outbox_dump(limit=none) %}
  {%- set rel = lacuna.find_outbox() -%}
  {%- if rel is none -%}
    {%- do log("lacuna.outbox missing " ~ lacuna.outbox_relation(), info=true) -%}
    {{ return("") }}
  {%- endif -%}
  {%- set sql -%}
    select payload from {{ rel }} order by recorded_at, record_id
    {%- if limit is not none %} limit {{ limit | int }}{% endif %}
  {%- endset -%}
  {%- set table = run_query(sql) -%}
  {%- for row in table.rows -%}
    {%- do log("lacuna.record " ~ row[0], info=false) -%}
  {%- endfor -%}
  {%- do log("lacuna.outbox rows " ~ (table.rows | length), info=true) -%}
{% endmacro %}


{#- run-operation: delete the records Lacuna has ingested (`record_ids`: a list). -#}
{% macro outbox_ack(record_ids) %}
  {%- set rel = lacuna.find_outbox() -%}
  {%- if rel is none or not record_ids -%}{{ return("") }}{%- endif -%}
  {%- for batch in record_ids | batch(500) -%}
    {%- set literals = [] -%}
    {%- for rid in batch -%}{%- do literals.append(lacuna.sql_string(rid)) -%}{%- endfor -%}
    {%- do lacuna.write("delete from " ~ rel ~ " where record_id in (" ~ (literals | join(", ")) ~ ")") -%}
  {%- endfor -%}
  {%- do log("lacuna.outbox acked " ~ (record_ids | length), info=true) -%}
{% endmacro %}
