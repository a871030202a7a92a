-- An advertising list of patients by diagnosis. Health data may be processed for care and
-- billing only: the purpose-limitation policy stops this model before it builds.
select
    c.email,
    c.first_name,
    v.diagnosis_code
from {{ ref('stg_patient_visits') }} as v
join {{ ref('stg_contacts') }} as c on c.contact_id = v.patient_id
