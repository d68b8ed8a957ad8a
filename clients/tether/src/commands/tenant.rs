//! `tether tenant`.

use tether_proto::v1::GetTenantRequest;

use super::Ctx;
use crate::output::emit;
use crate::views::TenantView;

pub async fn run(ctx: &Ctx) -> anyhow::Result<i32> {
    let tenant = ctx.admin().await?.get_tenant(GetTenantRequest {}).await?.into_inner();
    emit(ctx.output, &TenantView::from(tenant))?;
    Ok(0)
}
