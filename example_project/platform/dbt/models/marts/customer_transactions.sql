-- Every payment with the payer's contact details and country: personal + financial data joined
-- (Lacuna: PROPRIETARY with the union of the parents' tags).
select
    t.transaction_id,
    t.booked_at,
    t.amount,
    t.currency,
    t.iban,
    c.contact_id,
    c.first_name,
    c.last_name,
    c.email,
    c.phone,
    k.country_name,
    k.region
from {{ ref('stg_transactions') }} as t
join {{ ref('stg_contacts') }} as c on c.contact_id = t.contact_id
left join {{ ref('stg_country_codes') }} as k on k.country_code = c.country_code
