-- One row per order with the customer's contact details and what was paid: a join of personal
-- and financial data (Lacuna: PROPRIETARY, PII + FINANCIAL).
with paid as (
    select order_id, sum(amount) as amount
    from {{ ref('stg_payments') }}
    group by order_id
)

select
    o.order_id,
    o.order_date,
    o.status,
    c.customer_id,
    c.first_name,
    c.last_name,
    c.email,
    c.phone,
    c.country,
    coalesce(p.amount, 0) as amount
from {{ ref('stg_orders') }} as o
join {{ ref('stg_customers') }} as c on c.customer_id = o.customer_id
left join paid as p on p.order_id = o.order_id
