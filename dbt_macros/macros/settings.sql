{#-
  Settings every Lacuna macro reads. All of them are dbt vars, so they can be set in the
  project's dbt_project.yml (`vars:`) or per invocation (`--vars`):

    lacuna_schema   schema of the outbox table                    (default "lacuna")
    lacuna_table    name of the outbox table                      (default "events")
    lacuna_outbox   write records to the outbox table             (default true; the
                    `lacuna dbt` wrapper sets it false because it reads the log records live)
    lacuna_strict   refuse runs Lacuna does not govern            (default false; also the
                    environment variable LACUNA_DBT_STRICT=1)
    lacuna_user     who the records name                          (default: the profile's
                    user, else $USER)

  Set by the `lacuna dbt` wrapper, never by hand:

    lacuna                   {"run_id": ..., "governed_by": ...} - marks a governed run
    lacuna_denied            {model unique_id: policy message}   - the gate's denials
    lacuna_floor_violations  {model unique_id: message}          - declared floors below the data
-#}

{% macro settings() %}
  {{ return({
      "schema": var("lacuna_schema", "lacuna"),
      "table": var("lacuna_table", "events"),
      "outbox": lacuna._as_bool(var("lacuna_outbox", true)),
      "strict": lacuna._as_bool(var("lacuna_strict", env_var("LACUNA_DBT_STRICT", "false"))),
      "governed": var("lacuna", none) is mapping,
  }) }}
{% endmacro %}


{% macro _as_bool(value) %}
  {{ return((value | string | trim | lower) in ["1", "true", "yes", "on"]) }}
{% endmacro %}


{#- A compile error naming the node when its `meta` is not what Lacuna understands: an unknown
    tier in `classification`, tags that are not a list, an unknown `lacuna.operation`. Checked
    by register_run for every selected node, before anything builds, so a typo never
    publishes data unlabelled. -#}
{% macro validate_meta(node) %}
  {%- set tiers = ["PUBLIC", "INTERNAL", "PROPRIETARY"] -%}
  {%- set operations = ["read", "join", "aggregate", "filter", "transform", "anonymize", "export"] -%}
  {%- set meta = node.config.meta if node.config is mapping and node.config.meta is mapping else {} -%}
  {%- set declared = meta.get("classification") -%}
  {%- if declared is not none -%}
    {%- if declared is not string or (declared | trim | upper) not in tiers -%}
      {%- do exceptions.raise_compiler_error(
            "Lacuna: " ~ node.unique_id ~ " declares meta.classification '" ~ declared
            ~ "', which is not a tier; valid tiers are " ~ (tiers | join(", "))) -%}
    {%- endif -%}
  {%- endif -%}
  {%- set tags = meta.get("tags") -%}
  {%- if tags is not none and tags is not string and not (tags is iterable and tags is not mapping) -%}
    {%- do exceptions.raise_compiler_error(
          "Lacuna: " ~ node.unique_id ~ " declares meta.tags '" ~ tags
          ~ "'; give a list of tags such as [PII, CUSTOMER_DATA]") -%}
  {%- endif -%}
  {%- set ours = meta.get("lacuna") -%}
  {%- if ours is mapping and ours.get("operation") is not none -%}
    {%- if (ours.get("operation") | string | trim | lower) not in operations -%}
      {%- do exceptions.raise_compiler_error(
            "Lacuna: " ~ node.unique_id ~ " declares meta.lacuna.operation '" ~ ours.get("operation")
            ~ "'; valid operations are " ~ (operations | join(", "))) -%}
    {%- endif -%}
  {%- endif -%}
{% endmacro %}
