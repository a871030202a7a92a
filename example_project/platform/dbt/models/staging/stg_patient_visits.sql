select
    visit_id,
    patient_id,
    upper(diagnosis_code) as diagnosis_code,
    visited_on
from {{ source('raw', 'patient_visits') }}
