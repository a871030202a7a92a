select
    transaction_id,
    contact_id,
    cast(amount as decimal(12, 2)) as amount,
    currency,
    replace(iban, ' ', '') as iban,
    booked_at
from {{ source('raw', 'transactions') }}
