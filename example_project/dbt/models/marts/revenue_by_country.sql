-- Revenue per country: no individual-level column survives the aggregation, so Lacuna lowers the
-- tier to INTERNAL and keeps the history as DERIVED_FROM_PII.
select
    country,
    count(distinct customer_id) as customer_count,
    count(*) as number_of_orders,
    sum(amount) as total_amount
from {{ ref('customer_orders') }}
where status <> 'returned'
group by country
