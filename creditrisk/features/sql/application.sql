-- Application features: one row per applicant (SK_ID_CURR).
--
-- Reads `application` = application_train UNION ALL application_test (TARGET is NULL for the
-- unlabelled test applicants). Amounts are in the loan currency; DAYS_* count days relative to
-- the application date and are negative for past events. Every ratio is NULL when its
-- denominator is 0 or NULL (never +-inf). No imputation, no encoding: missing values stay NULL
-- and categoricals stay strings.

with

applicants as (

    select * from application

),

-- Empty fields on the application form: all 121 raw columns except TARGET (the label is not
-- part of the form). A test checks this list against the data model in creditrisk/data/tables.py.
completeness as (

    select
        *,
        cast(
            case when SK_ID_CURR is null then 1 else 0 end
            + case when NAME_CONTRACT_TYPE is null then 1 else 0 end
            + case when CODE_GENDER is null then 1 else 0 end
            + case when FLAG_OWN_CAR is null then 1 else 0 end
            + case when FLAG_OWN_REALTY is null then 1 else 0 end
            + case when CNT_CHILDREN is null then 1 else 0 end
            + case when AMT_INCOME_TOTAL is null then 1 else 0 end
            + case when AMT_CREDIT is null then 1 else 0 end
            + case when AMT_ANNUITY is null then 1 else 0 end
            + case when AMT_GOODS_PRICE is null then 1 else 0 end
            + case when NAME_TYPE_SUITE is null then 1 else 0 end
            + case when NAME_INCOME_TYPE is null then 1 else 0 end
            + case when NAME_EDUCATION_TYPE is null then 1 else 0 end
            + case when NAME_FAMILY_STATUS is null then 1 else 0 end
            + case when NAME_HOUSING_TYPE is null then 1 else 0 end
            + case when REGION_POPULATION_RELATIVE is null then 1 else 0 end
            + case when DAYS_BIRTH is null then 1 else 0 end
            + case when DAYS_EMPLOYED is null then 1 else 0 end
            + case when DAYS_REGISTRATION is null then 1 else 0 end
            + case when DAYS_ID_PUBLISH is null then 1 else 0 end
            + case when OWN_CAR_AGE is null then 1 else 0 end
            + case when FLAG_MOBIL is null then 1 else 0 end
            + case when FLAG_EMP_PHONE is null then 1 else 0 end
            + case when FLAG_WORK_PHONE is null then 1 else 0 end
            + case when FLAG_CONT_MOBILE is null then 1 else 0 end
            + case when FLAG_PHONE is null then 1 else 0 end
            + case when FLAG_EMAIL is null then 1 else 0 end
            + case when OCCUPATION_TYPE is null then 1 else 0 end
            + case when CNT_FAM_MEMBERS is null then 1 else 0 end
            + case when REGION_RATING_CLIENT is null then 1 else 0 end
            + case when REGION_RATING_CLIENT_W_CITY is null then 1 else 0 end
            + case when WEEKDAY_APPR_PROCESS_START is null then 1 else 0 end
            + case when HOUR_APPR_PROCESS_START is null then 1 else 0 end
            + case when REG_REGION_NOT_LIVE_REGION is null then 1 else 0 end
            + case when REG_REGION_NOT_WORK_REGION is null then 1 else 0 end
            + case when LIVE_REGION_NOT_WORK_REGION is null then 1 else 0 end
            + case when REG_CITY_NOT_LIVE_CITY is null then 1 else 0 end
            + case when REG_CITY_NOT_WORK_CITY is null then 1 else 0 end
            + case when LIVE_CITY_NOT_WORK_CITY is null then 1 else 0 end
            + case when ORGANIZATION_TYPE is null then 1 else 0 end
            + case when EXT_SOURCE_1 is null then 1 else 0 end
            + case when EXT_SOURCE_2 is null then 1 else 0 end
            + case when EXT_SOURCE_3 is null then 1 else 0 end
            + case when APARTMENTS_AVG is null then 1 else 0 end
            + case when BASEMENTAREA_AVG is null then 1 else 0 end
            + case when YEARS_BEGINEXPLUATATION_AVG is null then 1 else 0 end
            + case when YEARS_BUILD_AVG is null then 1 else 0 end
            + case when COMMONAREA_AVG is null then 1 else 0 end
            + case when ELEVATORS_AVG is null then 1 else 0 end
            + case when ENTRANCES_AVG is null then 1 else 0 end
            + case when FLOORSMAX_AVG is null then 1 else 0 end
            + case when FLOORSMIN_AVG is null then 1 else 0 end
            + case when LANDAREA_AVG is null then 1 else 0 end
            + case when LIVINGAPARTMENTS_AVG is null then 1 else 0 end
            + case when LIVINGAREA_AVG is null then 1 else 0 end
            + case when NONLIVINGAPARTMENTS_AVG is null then 1 else 0 end
            + case when NONLIVINGAREA_AVG is null then 1 else 0 end
            + case when APARTMENTS_MODE is null then 1 else 0 end
            + case when BASEMENTAREA_MODE is null then 1 else 0 end
            + case when YEARS_BEGINEXPLUATATION_MODE is null then 1 else 0 end
            + case when YEARS_BUILD_MODE is null then 1 else 0 end
            + case when COMMONAREA_MODE is null then 1 else 0 end
            + case when ELEVATORS_MODE is null then 1 else 0 end
            + case when ENTRANCES_MODE is null then 1 else 0 end
            + case when FLOORSMAX_MODE is null then 1 else 0 end
            + case when FLOORSMIN_MODE is null then 1 else 0 end
            + case when LANDAREA_MODE is null then 1 else 0 end
            + case when LIVINGAPARTMENTS_MODE is null then 1 else 0 end
            + case when LIVINGAREA_MODE is null then 1 else 0 end
            + case when NONLIVINGAPARTMENTS_MODE is null then 1 else 0 end
            + case when NONLIVINGAREA_MODE is null then 1 else 0 end
            + case when APARTMENTS_MEDI is null then 1 else 0 end
            + case when BASEMENTAREA_MEDI is null then 1 else 0 end
            + case when YEARS_BEGINEXPLUATATION_MEDI is null then 1 else 0 end
            + case when YEARS_BUILD_MEDI is null then 1 else 0 end
            + case when COMMONAREA_MEDI is null then 1 else 0 end
            + case when ELEVATORS_MEDI is null then 1 else 0 end
            + case when ENTRANCES_MEDI is null then 1 else 0 end
            + case when FLOORSMAX_MEDI is null then 1 else 0 end
            + case when FLOORSMIN_MEDI is null then 1 else 0 end
            + case when LANDAREA_MEDI is null then 1 else 0 end
            + case when LIVINGAPARTMENTS_MEDI is null then 1 else 0 end
            + case when LIVINGAREA_MEDI is null then 1 else 0 end
            + case when NONLIVINGAPARTMENTS_MEDI is null then 1 else 0 end
            + case when NONLIVINGAREA_MEDI is null then 1 else 0 end
            + case when FONDKAPREMONT_MODE is null then 1 else 0 end
            + case when HOUSETYPE_MODE is null then 1 else 0 end
            + case when TOTALAREA_MODE is null then 1 else 0 end
            + case when WALLSMATERIAL_MODE is null then 1 else 0 end
            + case when EMERGENCYSTATE_MODE is null then 1 else 0 end
            + case when OBS_30_CNT_SOCIAL_CIRCLE is null then 1 else 0 end
            + case when DEF_30_CNT_SOCIAL_CIRCLE is null then 1 else 0 end
            + case when OBS_60_CNT_SOCIAL_CIRCLE is null then 1 else 0 end
            + case when DEF_60_CNT_SOCIAL_CIRCLE is null then 1 else 0 end
            + case when DAYS_LAST_PHONE_CHANGE is null then 1 else 0 end
            + case when FLAG_DOCUMENT_2 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_3 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_4 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_5 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_6 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_7 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_8 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_9 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_10 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_11 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_12 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_13 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_14 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_15 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_16 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_17 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_18 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_19 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_20 is null then 1 else 0 end
            + case when FLAG_DOCUMENT_21 is null then 1 else 0 end
            + case when AMT_REQ_CREDIT_BUREAU_HOUR is null then 1 else 0 end
            + case when AMT_REQ_CREDIT_BUREAU_DAY is null then 1 else 0 end
            + case when AMT_REQ_CREDIT_BUREAU_WEEK is null then 1 else 0 end
            + case when AMT_REQ_CREDIT_BUREAU_MON is null then 1 else 0 end
            + case when AMT_REQ_CREDIT_BUREAU_QRT is null then 1 else 0 end
            + case when AMT_REQ_CREDIT_BUREAU_YEAR is null then 1 else 0 end
            as bigint
        ) as TOT_MISSING_COUNT
    from applicants

),

-- DAYS_EMPLOYED = 365243 is the "not employed / pensioner" sentinel, not ~1000 years of work:
-- flag it and treat the employment length as unknown.
employment as (

    select
        *,
        case when DAYS_EMPLOYED = 365243 then 1 else 0 end as days_employed_sentinel,
        case when DAYS_EMPLOYED <> 365243 then DAYS_EMPLOYED end as days_employed_actual
    from completeness

),

final as (

    select
        SK_ID_CURR,
        TARGET,

        -- kept as-is
        EXT_SOURCE_1,
        EXT_SOURCE_2,
        EXT_SOURCE_3,
        AMT_ANNUITY,
        AMT_CREDIT,
        AMT_GOODS_PRICE,
        AMT_INCOME_TOTAL,
        DAYS_BIRTH,
        DAYS_EMPLOYED,
        DAYS_REGISTRATION,
        DAYS_ID_PUBLISH,
        DAYS_LAST_PHONE_CHANGE,
        OWN_CAR_AGE,
        CODE_GENDER,
        CNT_CHILDREN,
        CNT_FAM_MEMBERS,
        REGION_RATING_CLIENT,
        REGION_RATING_CLIENT_W_CITY,
        REGION_POPULATION_RELATIVE,
        WEEKDAY_APPR_PROCESS_START,
        HOUR_APPR_PROCESS_START,
        NAME_INCOME_TYPE,
        NAME_EDUCATION_TYPE,
        NAME_HOUSING_TYPE,
        NAME_CONTRACT_TYPE,
        NAME_FAMILY_STATUS,
        REG_REGION_NOT_LIVE_REGION,
        REG_REGION_NOT_WORK_REGION,
        LIVE_REGION_NOT_WORK_REGION,
        REG_CITY_NOT_LIVE_CITY,
        REG_CITY_NOT_WORK_CITY,
        LIVE_CITY_NOT_WORK_CITY,
        OBS_30_CNT_SOCIAL_CIRCLE,
        DEF_30_CNT_SOCIAL_CIRCLE,
        OBS_60_CNT_SOCIAL_CIRCLE,
        DEF_60_CNT_SOCIAL_CIRCLE,
        AMT_REQ_CREDIT_BUREAU_HOUR,
        AMT_REQ_CREDIT_BUREAU_DAY,
        AMT_REQ_CREDIT_BUREAU_WEEK,
        AMT_REQ_CREDIT_BUREAU_MON,
        AMT_REQ_CREDIT_BUREAU_QRT,
        AMT_REQ_CREDIT_BUREAU_YEAR,
        FLAG_MOBIL,
        FLAG_EMP_PHONE,
        FLAG_WORK_PHONE,
        FLAG_CONT_MOBILE,
        FLAG_PHONE,
        FLAG_EMAIL,
        FLAG_OWN_CAR,
        FLAG_OWN_REALTY,
        FLAG_DOCUMENT_2,
        FLAG_DOCUMENT_3,
        FLAG_DOCUMENT_4,
        FLAG_DOCUMENT_5,
        FLAG_DOCUMENT_6,
        FLAG_DOCUMENT_7,
        FLAG_DOCUMENT_8,
        FLAG_DOCUMENT_9,
        FLAG_DOCUMENT_10,
        FLAG_DOCUMENT_11,
        FLAG_DOCUMENT_12,
        FLAG_DOCUMENT_13,
        FLAG_DOCUMENT_14,
        FLAG_DOCUMENT_15,
        FLAG_DOCUMENT_16,
        FLAG_DOCUMENT_17,
        FLAG_DOCUMENT_18,
        FLAG_DOCUMENT_19,
        FLAG_DOCUMENT_20,
        FLAG_DOCUMENT_21,

        TOT_MISSING_COUNT,
        -- years of 365 days
        -cast(DAYS_BIRTH as double) / 365 as AGE_YEARS,
        cast(days_employed_sentinel as bigint) as DAYS_EMPLOYED_ANOMALY,
        -cast(days_employed_actual as double) / 365 as EMPLOYED_YEARS,
        cast(days_employed_actual as double) / nullif(DAYS_BIRTH, 0) as EMPLOYMENT_YEARS_TO_AGE,

        -- affordability: annuity and credit against each other and against income
        AMT_ANNUITY / nullif(AMT_CREDIT, 0) as PAYMENT_RATE,
        AMT_CREDIT / nullif(AMT_INCOME_TOTAL, 0) as CREDIT_TO_INCOME,
        AMT_ANNUITY / nullif(AMT_INCOME_TOTAL, 0) as ANNUITY_TO_INCOME,
        AMT_GOODS_PRICE / nullif(AMT_CREDIT, 0) as GOODS_TO_CREDIT,
        AMT_INCOME_TOTAL / nullif(CNT_FAM_MEMBERS, 0) as INCOME_PER_PERSON,
        cast(CNT_CHILDREN as double) / nullif(CNT_FAM_MEMBERS, 0) as CHILDREN_RATIO,

        -- a missing external score or car age is information in itself
        cast(case when EXT_SOURCE_1 is null then 1 else 0 end as bigint) as EXT_SOURCE_1_IS_MISSING,
        cast(case when EXT_SOURCE_2 is null then 1 else 0 end as bigint) as EXT_SOURCE_2_IS_MISSING,
        cast(case when EXT_SOURCE_3 is null then 1 else 0 end as bigint) as EXT_SOURCE_3_IS_MISSING,
        cast(case when OWN_CAR_AGE is null then 1 else 0 end as bigint) as OWN_CAR_AGE_IS_MISSING,

        -- counts of 0/1 flags; a missing flag counts as 0
        cast(
            coalesce(FLAG_DOCUMENT_2, 0)
            + coalesce(FLAG_DOCUMENT_3, 0)
            + coalesce(FLAG_DOCUMENT_4, 0)
            + coalesce(FLAG_DOCUMENT_5, 0)
            + coalesce(FLAG_DOCUMENT_6, 0)
            + coalesce(FLAG_DOCUMENT_7, 0)
            + coalesce(FLAG_DOCUMENT_8, 0)
            + coalesce(FLAG_DOCUMENT_9, 0)
            + coalesce(FLAG_DOCUMENT_10, 0)
            + coalesce(FLAG_DOCUMENT_11, 0)
            + coalesce(FLAG_DOCUMENT_12, 0)
            + coalesce(FLAG_DOCUMENT_13, 0)
            + coalesce(FLAG_DOCUMENT_14, 0)
            + coalesce(FLAG_DOCUMENT_15, 0)
            + coalesce(FLAG_DOCUMENT_16, 0)
            + coalesce(FLAG_DOCUMENT_17, 0)
            + coalesce(FLAG_DOCUMENT_18, 0)
            + coalesce(FLAG_DOCUMENT_19, 0)
            + coalesce(FLAG_DOCUMENT_20, 0)
            + coalesce(FLAG_DOCUMENT_21, 0)
            as bigint
        ) as DOC_COUNT,
        cast(
            coalesce(FLAG_MOBIL, 0)
            + coalesce(FLAG_EMP_PHONE, 0)
            + coalesce(FLAG_WORK_PHONE, 0)
            + coalesce(FLAG_CONT_MOBILE, 0)
            + coalesce(FLAG_PHONE, 0)
            + coalesce(FLAG_EMAIL, 0)
            as bigint
        ) as CONTACT_COUNT,
        cast(
            coalesce(REG_REGION_NOT_LIVE_REGION, 0)
            + coalesce(REG_REGION_NOT_WORK_REGION, 0)
            + coalesce(LIVE_REGION_NOT_WORK_REGION, 0)
            + coalesce(REG_CITY_NOT_LIVE_CITY, 0)
            + coalesce(REG_CITY_NOT_WORK_CITY, 0)
            + coalesce(LIVE_CITY_NOT_WORK_CITY, 0)
            as bigint
        ) as ADDR_MISMATCH_SUM

    from employment

)

select * from final
