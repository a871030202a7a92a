-- A contact list for a partner, written to the `exports` schema that is synced to an unmanaged
-- folder (see dbt_project.yml). It carries raw PII, so Lacuna's export policy stops it before
-- it builds, with the policy's message and alternatives.
select
    customer_id,
    first_name,
    last_name,
    email,
    phone
from {{ ref('stg_customers') }}
