-- Argo CD health of every mabeam.io kind (Agent, Variable, Coordination, Auction, Market, Vote,
-- Bid, Order), from the conditions the operator writes (docs/install.md, "GitOps health").
-- Register it in argocd-cm as resource.customizations.health.mabeam.io_<Kind> for each kind.
local hs = { status = "Progressing", message = "Waiting for the MABEAM operator" }
if obj.status == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.message = "The operator has not observed the latest spec yet"
  return hs
end
local found = {}
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.status == "True" then
      found[condition.type] = condition.message or condition.type
    end
  end
end
for _, bad in ipairs({ "Failed", "Invalid", "Stalled" }) do
  if found[bad] ~= nil then
    hs.status = "Degraded"
    hs.message = found[bad]
    return hs
  end
end
for _, good in ipairs({ "Complete", "Ready" }) do
  if found[good] ~= nil then
    hs.status = "Healthy"
    hs.message = found[good]
    return hs
  end
end
if obj.status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = "Phase Failed"
  return hs
end
if obj.status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "The agent is suspended (spec.suspend)"
  return hs
end
-- An answer (Vote, Bid, Order) has a verdict instead of conditions.
if obj.status.accepted == true then
  hs.status = "Healthy"
  hs.message = obj.status.message or "Counted"
  return hs
elseif obj.status.accepted == false then
  hs.status = "Degraded"
  hs.message = obj.status.message or obj.status.reason or "Refused"
  return hs
end
if found["Reconciling"] ~= nil then
  hs.message = found["Reconciling"]
elseif obj.status.phase ~= nil then
  hs.message = "Phase " .. obj.status.phase
end
return hs
