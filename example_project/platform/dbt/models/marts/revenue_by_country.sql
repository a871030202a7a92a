-- Revenue per country: no individual-level column survives, so Lacuna lowers the tier to
-- INTERNAL and keeps the history as DERIVED_FROM_PII.
select
    country_name,
    region,
    count(distinct contact_id) as customer_count,
    count(*) as transaction_count,
    sum(amount) as total_amount
from {{ ref('customer_transactions') }}
group by country_name, region
