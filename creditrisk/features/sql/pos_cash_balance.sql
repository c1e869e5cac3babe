-- Point-of-sale and cash-loan features: per loan (SK_ID_PREV) first, then per applicant.
--
-- Reads `pos_cash_balance` (Kaggle POS_CASH_balance), one row per loan and month of an earlier
-- Home Credit POS or cash loan; MONTHS_BALANCE is relative to the application (0 = application
-- month, -1 = the month before). Rows join the applicant through their own SK_ID_CURR, so loans
-- missing from `previous_application` still count. SK_DPD is in days past due. A share counts
-- every month of the loan and a month whose condition is NULL as not met.

with

loan_months as (

    select
        SK_ID_CURR,
        SK_ID_PREV,
        MONTHS_BALANCE,
        NAME_CONTRACT_STATUS,
        SK_DPD,
        SK_DPD_DEF
    from pos_cash_balance

),

per_loan as (

    select
        SK_ID_CURR,
        SK_ID_PREV,
        -- share of months past due: the mean of a 0/1 indicator over all months of the loan
        avg(
            cast(case when SK_DPD > 0 or SK_DPD_DEF > 0 then 1 else 0 end as double)
        ) as past_due_share,
        max(SK_DPD) as dpd_max,
        -- months since the loan was last reported Active; NULL when it never was
        -max(
            case when NAME_CONTRACT_STATUS = 'Active' then MONTHS_BALANCE end
        ) as months_since_last_active
    from loan_months
    group by SK_ID_CURR, SK_ID_PREV

),

final as (

    select
        SK_ID_CURR,
        avg(past_due_share) as POS_DPD_ANY_SHARE,
        max(dpd_max) as POS_DPD_MAX,
        max(months_since_last_active) as POS_MONTHS_SINCE_LAST_ACTIVE
    from per_loan
    group by SK_ID_CURR

)

select * from final
